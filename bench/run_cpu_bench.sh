#!/usr/bin/env bash
# CPU training step: sinter vs PyTorch on the same machine, same threads, one run each.
#   bench/run_cpu_bench.sh [BUILD_DIR] [THREADS...]    (default threads: 2 and nproc)
# MODES="fp32 bf16": also sinter's train.mixed_precision=bf16 against PyTorch's CPU autocast
# bf16 (default MODES=fp32). BATCH=n: the batch (default 4, the prototype's).
set -euo pipefail
build=${1:-build}; shift || true
threads=("$@"); [ ${#threads[@]} -gt 0 ] || threads=(2 $(nproc))
# PyTorch from $PYTHON, else .venv (SINTER_PY_TORCH=1 scripts/install.sh puts it there), else python3
py=${PYTHON:-}
if [ -z "$py" ]; then
  for py in .venv/bin/python python3 /usr/bin/python3; do "$py" -c "import torch" 2>/dev/null && break; done
fi
steps=${STEPS:-5}
batch=${BATCH:-4}
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(date -u +%F)"
for t in $(printf "%s\n" "${threads[@]}" | sort -un); do
for mode in ${MODES:-fp32}; do
  sflag=(); pmode=eager
  if [ "$mode" = bf16 ]; then sflag=(--bf16); pmode=bf16; fi
  s=$("$build/bench_step" --device cpu --threads "$t" --batch "$batch" --steps "$steps" --warmup 1 ${sflag[@]+"${sflag[@]}"})
  p=$($py bench/torch_step.py --device cpu --threads "$t" --batch "$batch" --steps "$steps" --warmup 1 --mode "$pmode")
  echo "$s"; echo "$p"
  python3 - "$s" "$p" <<'PY'
import json, sys
s, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"batch {s['batch']}, threads {s['threads']} {s['mode']}: sinter {s['step_ms_median']:.1f} ms/step, pytorch ({p['mode']}) "
      f"{p['step_ms_median']:.1f} ms/step, ratio {s['step_ms_median'] / p['step_ms_median']:.3f}")
PY
done
done
