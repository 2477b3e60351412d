#!/usr/bin/env bash
# `make demo`: demo corpus -> train conf/demo.yaml -> enhance one validation file.
# Usage: scripts/demo.sh BUILD_DIR      (DEVICE=vulkan:0 make demo: another device; default auto)
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SINTER="$BUILD/sinter"
[ -x "$SINTER" ] || { echo "demo: $SINTER not found; build first (make build)" >&2; exit 3; }

if [ -d data/demo/clean ] && [ -d data/demo/noise ] && [ -d data/demo/valid ]; then
  echo "== demo corpus: data/demo exists, kept"
else
  echo "== demo corpus: data/demo (about 6 minutes of speech)"
  "$SINTER" data demo --out data/demo --minutes 6
fi

DEVICE=${DEVICE:-auto}
echo "== training conf/demo.yaml on device $DEVICE"
LOG=$(mktemp)
start=$(date +%s)
set +e
"$SINTER" train conf/demo.yaml device="$DEVICE" ${DEMO_ARGS:-} | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 0 ] || { echo "demo: training failed (exit $rc)" >&2; rm -f "$LOG"; exit "$rc"; }
RUN=$(sed -n 's/^run directory: //p' "$LOG" | tail -1)
rm -f "$LOG"
echo "== trained in $(( $(date +%s) - start )) s"

NOISY=""
ENH=""
if "$SINTER" enhance --help > /dev/null 2>&1; then
  # the trainer wrote noisy/clean/enhanced validation mixtures to $RUN/samples/
  NOISY="$RUN/samples/noisy_0.wav"
  if [ -f "$NOISY" ]; then
    ENH="$RUN/enhanced_noisy_0.wav"
    echo "== enhancing $NOISY"
    "$SINTER" enhance --device "$DEVICE" --ckpt "$RUN/best.safetensors" "$NOISY" -o "$ENH" || { echo "demo: enhance failed" >&2; ENH=""; }
    [ -n "$ENH" ] && "$SINTER" metrics "$RUN/samples/clean_0.wav" "$ENH" || true
  fi
else
  echo "== note: 'sinter enhance' is not available in this build yet; skipped the enhancement step"
fi

echo
echo "run directory:  $RUN"
echo "checkpoints:    $RUN/best.safetensors, $RUN/last.safetensors"
echo "loss curve:     $RUN/loss.svg"
echo "metrics:        $RUN/metrics.csv (TensorBoard: tensorboard --logdir $RUN)"
[ -n "$ENH" ] && echo "enhanced WAV:   $ENH (from $NOISY)"
echo "score it:       $SINTER eval --ckpt $RUN/best.safetensors conf/demo.yaml"
