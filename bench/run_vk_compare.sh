#!/usr/bin/env bash
# The prototype CRN (batch 4, 400 frames) through Vulkan, through CUDA and through PyTorch
# CUDA eager, in one run on one machine, then a table side by side: training step (fp32,
# and the mixed-precision path where the backend has one), inference (4 s of audio per
# item: ms per batch and real-time factor), peak memory.
#   bench/run_vk_compare.sh [BUILD_DIR] [extra bench_step args...]
#   VK_DEV=vulkan:1 STEPS=20 bench/run_vk_compare.sh build-h100
# Rows that cannot run (no CUDA device, no torch, no mixed precision on Vulkan) say why.
set -uo pipefail
build=${1:-build}; shift || true
steps=${STEPS:-20}
vk=${VK_DEV:-vulkan}
py=${PYTHON:-python3}
res=$(mktemp)
trap 'rm -f "$res"' EXIT

row() { # label, command...
  local label=$1; shift
  local r
  if r=$(timeout 300 "$@" 2>/tmp/run_vk_compare.err); then
    echo "$r" | tail -1 | sed "s/^{/{\"label\":\"$label\",/" >>"$res"
    echo "$r" | tail -1
  else
    echo "{\"label\":\"$label\",\"error\":\"$(tail -1 /tmp/run_vk_compare.err | tr -d '"\\' | cut -c1-200)\"}" >>"$res"
    echo "$label: failed: $(tail -1 /tmp/run_vk_compare.err)"
  fi
}

echo "machine: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1); $(date -u '+%F %H:%M UTC')"
row "vulkan fp32" "$build/bench_step" --device "$vk" --steps "$steps" --warmup 3 "$@"
row "vulkan f16" "$build/bench_step" --device "$vk" --steps "$steps" --warmup 3 --f16 "$@"
row "vulkan infer" "$build/bench_step" --device "$vk" --steps "$steps" --warmup 3 --infer "$@"
row "cuda fp32" "$build/bench_step" --device cuda --steps "$steps" --warmup 3 "$@"
row "cuda bf16" "$build/bench_step" --device cuda --steps "$steps" --warmup 3 --bf16 "$@"
row "cuda infer" "$build/bench_step" --device cuda --steps "$steps" --warmup 3 --infer "$@"
row "pytorch fp32" "$py" bench/torch_step.py --device cuda --steps "$steps"
row "pytorch infer" "$py" bench/torch_step.py --device cuda --steps "$steps" --infer

python3 - "$res" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {r["label"]: r for r in rows}
ref = by.get("cuda fp32", {}).get("step_ms_median")
pt = by.get("pytorch fp32", {}).get("step_ms_median")
print()
print("| run | ms (median) | x our CUDA fp32 | x PyTorch eager | real-time factor | peak MB |")
print("|---|---|---|---|---|---|")
for r in rows:
    if "error" in r:
        print(f"| {r['label']} | - | - | - | - | - ({r['error']}) |")
        continue
    ms = r["step_ms_median"]
    infer = r.get("mode") == "infer"
    c = by.get("cuda infer" if infer else "cuda fp32", {}).get("step_ms_median")
    p = by.get("pytorch infer" if infer else "pytorch fp32", {}).get("step_ms_median")
    # the prototype's hop is 10 ms: a batch of B items of T frames is B*T*10 ms of audio
    audio_ms = r["batch"] * r["frames"] * 10.0 if infer else None
    rtf = f"{ms / audio_ms:.5f}" if audio_ms else "-"
    mem = r.get("peak_mem_mb")
    mem = f"{mem:.1f}" if isinstance(mem, (int, float)) else "-"
    print(f"| {r['label']} ({r.get('mode')}) | {ms:.2f} | {ms / c:.2f} | {ms / p:.2f} | {rtf} | {mem} |"
          if c and p else f"| {r['label']} ({r.get('mode')}) | {ms:.2f} | - | - | {rtf} | {mem} |")
PY
