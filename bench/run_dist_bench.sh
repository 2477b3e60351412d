#!/usr/bin/env bash
# Data-parallel scaling on one host with 2 (or more) GPUs: sinter (mpirun + NCCL) at 1 and
# N GPUs, and PyTorch DDP (torchrun + NCCL) on the same CRN, per-GPU batch 16 and 4;
# prints a table of samples/s and the N-GPU / 1-GPU ratios (issue 12 target: >= 1.9x
# at 2 GPUs, per-GPU batch 16).
#   bench/run_dist_bench.sh [BUILD_DIR]        (default build-gpu)
# env: NGPU (default 2), BATCHES ("16 4"), FRAMES (400), STEPS (20), HIDDEN (1024),
#      MPIRUN_ARGS (extra mpirun flags), SKIP_TORCH=1
# Needs: a CUDA build with MPI and NCCL (cmake -DSINTER_CUDA=ON; configure prints
# "sinter MPI: ..." and "sinter NCCL: ..."), mpirun, and for the baseline python3 with
# torch (CUDA) and torchrun.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
ngpu=${NGPU:-2}
batches=${BATCHES:-"16 4"}
frames=${FRAMES:-400}
steps=${STEPS:-20}
hidden=${HIDDEN:-1024}
bin="$build/bench_dist_step"
die() { echo "run_dist_bench: $*" >&2; exit 1; }

[ -x "$bin" ] || die "$bin is missing: cmake -S . -B $build -DSINTER_CUDA=ON && cmake --build $build -j --target bench_dist_step"
command -v mpirun >/dev/null || die "mpirun is missing (Debian: apt-get install openmpi-bin libopenmpi-dev, then rebuild)"
have=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
[ "$have" -ge "$ngpu" ] || die "this host shows $have GPU(s) (nvidia-smi -L); the benchmark needs $ngpu"
grep -q "SN_HAVE_NCCL" "$build/CMakeCache.txt" 2>/dev/null || grep -q "NCCL_LIBRARY:FILEPATH=/" "$build/CMakeCache.txt" \
  || echo "run_dist_bench: warning: $build may lack NCCL (no NCCL_LIBRARY in its CMakeCache): gradients would go through MPI on the host" >&2
root=""; [ "$(id -u)" -eq 0 ] && root="--allow-run-as-root"
# one process per GPU, each bound to none (sinter picks cuda:<local rank>)
mpi=(mpirun $root --bind-to none -np "$ngpu" ${MPIRUN_ARGS:-})
torch_ok=1
if [ -n "${SKIP_TORCH:-}" ]; then torch_ok=0
elif ! python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.device_count() >= 1 else 1)' 2>/dev/null; then
  echo "run_dist_bench: no PyTorch with CUDA: the DDP baseline is skipped" >&2; torch_ok=0
elif ! command -v torchrun >/dev/null; then
  echo "run_dist_bench: torchrun missing: the DDP baseline is skipped" >&2; torch_ok=0
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
args=(--frames "$frames" --steps "$steps" --warmup 3 --hidden "$hidden")
for b in $batches; do
  echo "== per-GPU batch $b" >&2
  "$bin" --device cuda --batch "$b" "${args[@]}" | tee "$out/s1_$b.json" >&2
  "${mpi[@]}" "$bin" --device cuda --batch "$b" "${args[@]}" | tee "$out/sN_$b.json" >&2
  if [ "$torch_ok" = 1 ]; then
    torchrun --standalone --nproc_per_node 1 bench/torch_ddp.py --batch "$b" "${args[@]}" | tee "$out/t1_$b.json" >&2
    torchrun --standalone --nproc_per_node "$ngpu" bench/torch_ddp.py --batch "$b" "${args[@]}" | tee "$out/tN_$b.json" >&2
  fi
done
python3 - "$out" "$ngpu" "$batches" <<'PY'
import json, os, sys
d, n, batches = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
def get(name):
    p = os.path.join(d, name)
    if not os.path.exists(p): return None
    for line in open(p):
        line = line.strip()
        if line.startswith("{"): return json.loads(line)
    return None
print(f"{'impl':<14}{'batch/GPU':>10}{'1 GPU samples/s':>18}{f'{n} GPUs samples/s':>19}{'scaling':>9}{'ms/step 1|N':>16}")
for b in batches:
    for impl, a, c in (("sinter", f"s1_{b}.json", f"sN_{b}.json"), ("pytorch-ddp", f"t1_{b}.json", f"tN_{b}.json")):
        x, y = get(a), get(c)
        if not x or not y: continue
        r = y["samples_per_s"] / x["samples_per_s"]
        print(f"{impl:<14}{b:>10}{x['samples_per_s']:>18.1f}{y['samples_per_s']:>19.1f}{r:>8.2f}x"
              f"{x['step_ms_median']:>8.1f}|{y['step_ms_median']:.1f}")
    s, t = get(f"sN_{b}.json"), get(f"tN_{b}.json")
    if s and t: print(f"{'':<14}{b:>10}  sinter / PyTorch DDP at {n} GPUs: {s['samples_per_s'] / t['samples_per_s']:.2f}x")
PY
