#!/usr/bin/env bash
# Builds sinter's core with the CUDA and Vulkan backends on a GPU machine, runs the
# tests (core, and the backend parity suites for every backend with a device) and the
# GPU benchmarks, and prints a short summary last.
#
#   scripts/gpu-check.sh                    # everything
#   SKIP_BENCH=1 scripts/gpu-check.sh       # build + tests only
#   SKIP_TESTS=1 scripts/gpu-check.sh       # build + benchmarks only
#   QUICK=1 scripts/gpu-check.sh            # no core ctest (CI runs it), the backend suites and the
#                                           # golden tests per backend, the main benchmarks only
#   SANITIZE=1 SAN_FILTER='test_conv*' ...  # also compute-sanitizer memcheck and racecheck over
#                                           # the CUDA parity suite (SAN_FILTER: cmocka test names)
#   BUILD=build-gpu ARCH=90 JOBS=16 scripts/gpu-check.sh
#   PREBUILT=1 scripts/gpu-check.sh         # no build: run what scripts/gpu-pack.sh packed into
#                                           # .gpubin here (the whole ctest, the CLI on the GPUs)
#
# The GPU machine has nvcc and cmake but no OpenBLAS, cmocka, Vulkan loader/headers or
# glslc: carry them as Debian packages unpacked with `dpkg -x <deb> .deps/root`
# (libopenblas0-pthread, libopenblas-pthread-dev, libcmocka0, libcmocka-dev, libvulkan1,
# libvulkan-dev, glslc, libshaderc1); this script points CMake and the loader at
# .deps/root when it exists, and the Vulkan loader at the NVIDIA driver's ICD.
# Logs go to $OUT (or /tmp/sinter-gpu-check).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${BUILD:-build-gpu}
arch=${ARCH:-90}
jobs=${JOBS:-$(nproc)}
out=${OUT:-/tmp/sinter-gpu-check}
mkdir -p "$out"
summary=()
note() { summary+=("$*"); echo "== $*"; }

deps=$root/.deps/root
cmake_deps=()
if [ -n "${PREBUILT:-}" ]; then
  pack=$root/.gpubin
  [ -f "$pack/bin.tar.xz" ] || { echo "PREBUILT: no $pack/bin.tar.xz (run scripts/gpu-pack.sh and carry .gpubin)"; exit 1; }
  srcdir=$(cat "$pack/srcdir")
  # tests open files by the source path they were built at: make it lead here
  if [ "$srcdir" != "$root" ]; then
    if [ -e "$srcdir" ] && [ "$(cd "$srcdir" && pwd -P)" != "$(pwd -P)" ]; then
      echo "PREBUILT: $srcdir exists and is not this tree"; exit 1
    fi
    mkdir -p "$(dirname "$srcdir")" && ln -sfn "$root" "$srcdir"
  fi
  build=$(cat "$pack/build")
  mkdir -p "$build" /tmp/sinter-lib
  tar -C "$build" -xJf "$pack/bin.tar.xz" && tar -C /tmp/sinter-lib -xJf "$pack/lib.tar.xz" || exit 1
  export LD_LIBRARY_PATH="/tmp/sinter-lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export SINTER_OPENBLAS=/tmp/sinter-lib/libopenblas.so.0 SINTER_SKIP_PY_REFS=1
elif [ -d "$deps" ]; then
  lib=$deps/usr/lib/x86_64-linux-gnu
  export LD_LIBRARY_PATH="$lib:$lib/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  cmake_deps=(-DSINTER_OPENBLAS_DIR="$deps" -DSINTER_CMOCKA_DIR="$deps")
  if [ -x "$deps/usr/bin/glslc" ] && [ -f "$deps/usr/include/vulkan/vulkan.h" ]; then
    cmake_deps+=(-DVulkan_INCLUDE_DIR="$deps/usr/include" -DVulkan_LIBRARY="$lib/libvulkan.so.1"
                 -DSN_GLSLC="$deps/usr/bin/glslc")
  fi
  # the -dev packages' libX.so links point at absolute paths that dpkg -x did not
  # create: make relative ones so the linker finds them
  for so in "$lib"/libopenblas.so "$lib"/openblas-pthread/libopenblas.so "$lib"/libcmocka.so "$lib"/libvulkan.so; do
    if [ -L "$so" ] && [ ! -e "$so" ]; then ln -sf "$(basename "$(readlink "$so")")" "$so"; fi
  done
else
  note "no .deps/root: using system OpenBLAS/cmocka if installed"
fi

# NVIDIA's Vulkan driver needs glvnd; a bare machine has none: unpack the carried .gl debs
# (libvulkan1 libglvnd0 libegl1 libgl1 libglx0 libopengl0 libgles2, `apt-get download`)
if [ -d .gl ] && ! ldconfig -p | grep -q libGLdispatch; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ]; then export VK_DRIVER_FILES=$icd; fi

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,utilization.gpu --format=csv,noheader 2>&1 | tee "$out/gpu.txt"
nvcc --version | tail -1
note "gpu: $(head -1 "$out/gpu.txt")"

if [ -z "${PREBUILT:-}" ]; then
echo "== configure"
if ! cmake -S . -B "$build" -DSINTER_APP=OFF -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$arch" \
     "${cmake_deps[@]}" >"$out/configure.log" 2>&1; then
  tail -30 "$out/configure.log"
  note "configure: FAILED (see $out/configure.log)"
  printf '%s\n' "${summary[@]}"
  exit 1
fi
grep -E "sinter (BLAS|CUDA|Vulkan)|cmocka" "$out/configure.log"

echo "== build"
t0=$(date +%s)
if ! cmake --build "$build" -j "$jobs" >"$out/build.log" 2>&1; then
  grep -E "error|Error" "$out/build.log" | head -40
  note "build: FAILED (see $out/build.log)"
  printf '%s\n' "${summary[@]}"
  exit 1
fi
nwarn=$(grep -c "warning" "$out/build.log" || true)
note "build: ok in $(( $(date +%s) - t0 )) s, $nwarn warning lines"
fi

rc_tests=0
if [ -z "${SKIP_TESTS:-}" ]; then
echo "== tests"
if [ -z "${QUICK:-}" ]; then
( cd "$build" && ctest --output-on-failure -j "$jobs" --timeout "${TEST_TIMEOUT:-900}" -E "^backend/" ) >"$out/ctest.log" 2>&1 || rc_tests=$?
grep -E "tests passed|Test +#|\*\*\*|Failed|Skipped|FAILED|Not Run" "$out/ctest.log" | tail -60
note "tests: $(grep -E 'tests passed' "$out/ctest.log" || echo 'no ctest summary')"
failed=$(grep -E '^\s+[0-9]+ - ' "$out/ctest.log" | sed 's/^ *//' | tr '\n' ';')
[ -n "$failed" ] && note "tests failed or skipped: $failed"
fi
# the parity suites (ctest leaves them to this loop), with the per-op errors in full
for kind in ${KINDS:-cuda vulkan}; do
  for t in test_backend_ops test_backend_train test_golden_crn test_golden_models; do
    [ -x "$build/$t" ] || continue
    timeout "${TEST_TIMEOUT:-600}" "$build/$t" $kind >"$out/$t-$kind.log" 2>&1
    rc=$?
    grep -E "FAILED|PASSED|\[  ERROR|Failure|error|skipped" "$out/$t-$kind.log" | head -20
    [ $rc -eq 0 ] || [ $rc -eq 77 ] || rc_tests=1
    note "$t $kind: exit $rc ($(grep -cE '^\[       OK' "$out/$t-$kind.log") ok, $(grep -cE '^\[  FAILED' "$out/$t-$kind.log") failed lines)"
  done
done
# the Vulkan backend's own tests (device selection, replay, staging) on the real driver
for t in test_vulkan_backend test_vulkan_ops; do
  [ -x "$build/$t" ] || continue
  timeout "${TEST_TIMEOUT:-600}" "$build/$t" >"$out/$t.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] || [ $rc -eq 77 ] || { rc_tests=1; grep -E "FAILED|ERROR|Failure" "$out/$t.log" | head; }
  note "$t: exit $rc ($(grep -cE '^\[       OK' "$out/$t.log") ok, $(grep -cE '^\[  FAILED' "$out/$t.log") failed lines)"
done
fi

# the CLI on each GPU backend: a described model (conf/models) trains a few hundred steps
# on the demo corpus, resumes, is summarised, evaluated and streams enhance
if [ -z "${SKIP_APP:-}" ] && [ -x "$build/sinter" ]; then
  echo "== the CLI on the GPUs"
  app=$out/app
  mkdir -p "$app"
  "$build/sinter" devices >"$app/devices.txt" 2>&1; cat "$app/devices.txt"
  "$build/sinter" data demo --out /tmp/sn-demo --minutes 2 >"$app/data.log" 2>&1 || note "app: demo corpus FAILED"
  for dev in ${APP_DEVS:-cuda vulkan}; do
    for m in ${APP_MODELS:-unet_gru fc_mask crn}; do
      log=$app/$dev-$m.log
      args=(conf/demo.yaml model.file=conf/models/$m.yaml device=$dev out_dir=/tmp/sn-runs name=$dev-$m
            data.clean_dir=/tmp/sn-demo/clean data.noise_dir=/tmp/sn-demo/noise data.valid_dir=/tmp/sn-demo/valid
            train.epochs=${APP_EPOCHS:-4} train.valid_every=20 train.ckpt_every=20 train.log_every=10)
      t0=$(date +%s.%N)
      timeout 240 "$build/sinter" train "${args[@]}" --quiet >"$log" 2>&1; rc=$?
      t1=$(date +%s.%N)
      run=$(ls -d /tmp/sn-runs/$dev-$m* 2>/dev/null | tail -1)
      last=$(tail -1 "$run/metrics.csv" 2>/dev/null)
      timeout 120 "$build/sinter" train "${args[@]}" train.epochs=$(( ${APP_EPOCHS:-4} + 1 )) --resume "$run" --quiet >>"$log" 2>&1; rc2=$?
      "$build/sinter" model conf/demo.yaml model.file=conf/models/$m.yaml device=$dev >>"$log" 2>&1; rc3=$?
      "$build/sinter" eval --ckpt "$run/best.safetensors" device=$dev data.valid_dir=/tmp/sn-demo/valid >>"$log" 2>&1; rc4=$?
      "$build/sinter" enhance --ckpt "$run/best.safetensors" --device $dev /tmp/sn-demo/valid -o "$app/enh-$dev-$m" >>"$log" 2>&1; rc5=$?
      note "app $dev $m: train exit $rc ($(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b - a}') s; last metrics: $last), resume $rc2, model $rc3, eval $rc4, enhance $rc5"
      [ "$rc$rc2$rc3$rc4$rc5" = "00000" ] || { rc_tests=1; tail -5 "$log"; }
    done
  done
fi

if [ -z "${SKIP_BENCH:-}" ] && [ -x "$build/bench_step" ]; then
  echo "== benchmarks (CRN training step, batch 4, 400 frames)"
  : >"$out/bench.jsonl"
  run_bench() { # label, command...
    local label=$1; shift
    local r
    if r=$(timeout 300 "$@" 2>>"$out/bench.err"); then
      echo "$r" | tee -a "$out/bench.jsonl"
      note "bench $label: $(echo "$r" | tail -1 | grep -oE '"step_ms_median": *[0-9.]+|"fwd_ms_median": *[0-9.]+' | tr '\n' ' ')"
    else
      note "bench $label: FAILED ($(tail -2 "$out/bench.err" | tr '\n' ' '))"
    fi
  }
  run_bench "sinter cuda f32" "$build/bench_step" --device cuda --steps 20 --warmup 3
  [ -z "${QUICK:-}" ] && run_bench "sinter cuda tf32" "$build/bench_step" --device cuda --steps 20 --warmup 3 --tf32
  [ -z "${QUICK:-}" ] && run_bench "sinter cuda bf16" "$build/bench_step" --device cuda --steps 20 --warmup 3 --bf16
  run_bench "sinter cuda infer" "$build/bench_step" --device cuda --steps 20 --warmup 3 --infer
  [ -z "${QUICK:-}" ] && run_bench "sinter cuda b16" "$build/bench_step" --device cuda --steps 20 --warmup 3 --batch 16
  [ -z "${QUICK:-}" ] && run_bench "sinter cuda gru" "$build/bench_step" --device cuda --steps 20 --warmup 3 --rnn gru
  [ -z "${QUICK:-}" ] && run_bench "sinter cuda attention" "$build/bench_step" --device cuda --steps 20 --warmup 3 --rnn attention
  run_bench "sinter vulkan f32" "$build/bench_step" --device vulkan --steps 10 --warmup 2
  run_bench "sinter vulkan infer" "$build/bench_step" --device vulkan --steps 10 --warmup 2 --infer
  if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    run_bench "pytorch cuda eager" python3 bench/torch_step.py --device cuda --steps 20
    [ -z "${QUICK:-}" ] && run_bench "pytorch cuda bf16" python3 bench/torch_step.py --device cuda --steps 20 --mode bf16
    [ -z "${QUICK:-}" ] && run_bench "pytorch cuda b16" python3 bench/torch_step.py --device cuda --steps 20 --batch 16
    run_bench "pytorch cuda infer" python3 bench/torch_step.py --device cuda --steps 20 --infer
  fi
fi

if [ -n "${SANITIZE:-}" ] && command -v compute-sanitizer >/dev/null && [ -x "$build/test_backend_ops" ]; then
  echo "== compute-sanitizer"
  # SAN_FILTER: space-separated cmocka patterns, one sanitizer run each; API errors are
  # not reported (test_device_info provokes an out-of-memory refusal on purpose)
  for tool in ${SAN_TOOLS:-memcheck racecheck}; do
    for f in ${SAN_FILTER:-*}; do
      log=$out/sanitizer-$tool-$(echo "$f" | tr -c 'a-z0-9_\n' '_').log
      SN_TEST_FILTER="$f" timeout "${SAN_TIMEOUT:-280}" compute-sanitizer --tool $tool --report-api-errors no \
        --error-exitcode 9 "$build/test_backend_ops" cuda >"$log" 2>&1
      rc=$?
      grep -E "ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED" "$log" | tail -4
      note "compute-sanitizer $tool ($f): exit $rc; $(grep -cE '^\[       OK' "$log") tests ok; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1)"
    done
  done
fi
echo
echo "================ summary ================"
printf '%s\n' "${summary[@]}"
exit $rc_tests
