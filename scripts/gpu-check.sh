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
if [ -d "$deps" ]; then
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

icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ]; then export VK_DRIVER_FILES=$icd; fi

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,utilization.gpu --format=csv,noheader 2>&1 | tee "$out/gpu.txt"
nvcc --version | tail -1
note "gpu: $(head -1 "$out/gpu.txt")"

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

rc_tests=0
if [ -z "${SKIP_TESTS:-}" ]; then
echo "== tests"
if [ -z "${QUICK:-}" ]; then
( cd "$build" && ctest --output-on-failure -j "$jobs" --timeout 900 -E "^backend/" ) >"$out/ctest.log" 2>&1 || rc_tests=$?
grep -E "tests passed|Test +#|\*\*\*|Failed|Skipped|FAILED|Not Run" "$out/ctest.log" | tail -60
note "tests: $(grep -E 'tests passed' "$out/ctest.log" || echo 'no ctest summary')"
failed=$(grep -E '^\s+[0-9]+ - ' "$out/ctest.log" | sed 's/^ *//' | tr '\n' ';')
[ -n "$failed" ] && note "tests failed or skipped: $failed"
fi
# the parity suites (ctest leaves them to this loop), with the per-op errors in full
for kind in cuda vulkan; do
  for t in test_backend_ops test_backend_train test_golden_crn; do
    [ -x "$build/$t" ] || continue
    timeout "${TEST_TIMEOUT:-600}" "$build/$t" $kind >"$out/$t-$kind.log" 2>&1
    rc=$?
    grep -E "FAILED|PASSED|\[  ERROR|Failure|error|skipped" "$out/$t-$kind.log" | head -20
    [ $rc -eq 0 ] || [ $rc -eq 77 ] || rc_tests=1
    note "$t $kind: exit $rc ($(grep -cE '^\[       OK' "$out/$t-$kind.log") ok, $(grep -cE '^\[  FAILED' "$out/$t-$kind.log") failed lines)"
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
  for tool in memcheck racecheck; do
    SN_TEST_FILTER="${SAN_FILTER:-*}" timeout "${SAN_TIMEOUT:-280}" compute-sanitizer --tool $tool --error-exitcode 9 \
      "$build/test_backend_ops" cuda >"$out/sanitizer-$tool.log" 2>&1
    rc=$?
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED" "$out/sanitizer-$tool.log" | tail -4
    note "compute-sanitizer $tool (${SAN_FILTER:-all}): exit $rc; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitizer-$tool.log" | tail -1)"
  done
fi
echo
echo "================ summary ================"
printf '%s\n' "${summary[@]}"
exit $rc_tests
