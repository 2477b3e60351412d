#!/usr/bin/env bash
# fp32 CRN training step on a GPU, sinter vs PyTorch eager, alternating ROUNDS times
# in one run (PyTorch's own time moves by +-20% between runs), then the medians.
#   bench/run_gpu_ratio.sh [BUILD_DIR] [extra bench_step/torch_step args...]
set -euo pipefail
build=${1:-build-gpu}; shift || true
rounds=${ROUNDS:-3}
s_ms=(); p_ms=()
for r in $(seq "$rounds"); do
  s=$("$build/bench_step" --device cuda --steps 20 --warmup 3 "$@")
  p=$(python3 bench/torch_step.py --device cuda --steps 20 "$@")
  echo "$s"; echo "$p"
  s_ms+=("$(echo "$s" | python3 -c 'import json,sys; print(json.load(sys.stdin)["step_ms_median"])')")
  p_ms+=("$(echo "$p" | python3 -c 'import json,sys; print(json.load(sys.stdin)["step_ms_median"])')")
done
python3 - "${s_ms[*]}" "${p_ms[*]}" <<'PY'
import statistics, sys
s = [float(v) for v in sys.argv[1].split()]; p = [float(v) for v in sys.argv[2].split()]
print(f"sinter ms/step {s}, pytorch ms/step {p}")
print(f"medians: sinter {statistics.median(s):.2f} ms, pytorch {statistics.median(p):.2f} ms, "
      f"ratio {statistics.median(s) / statistics.median(p):.3f} (per round: "
      + ", ".join(f"{a / b:.3f}" for a, b in zip(s, p)) + ")")
PY
