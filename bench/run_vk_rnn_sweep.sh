#!/usr/bin/env bash
# Every variant of the Vulkan RNN step kernels (SN_VK_RNN_VARIANT, src/backends/vulkan/rnn.c)
# through bench_lstm, LSTM and GRU at the prototype shape (B=4, T=400, I=H=1024, 2 layers),
# forward + backward: one line per variant and cell, with microseconds per timestep and
# layer (the per-step kernels dominate: compare with the GPU default, j4s32r), then the fastest.
#   bench/run_vk_rnn_sweep.sh [BUILD_DIR] [RUNS]
#   VK_DEV=vulkan:1 SHAPE="4 400 1024 1024 2" bench/run_vk_rnn_sweep.sh build-h100 5
#   WAVE=1 bench/run_vk_rnn_sweep.sh build   (the forward's layer wavefront, SN_VK_RNN_WAVE=1:
#   only the variants with a wave form, j4s16 and j2s32, unless VARIANTS="..." names others,
#   which then run without it; WAVE_CHUNK=<n> sets SN_VK_RNN_WAVE_CHUNK)
#   PERSIST=1 bench/run_vk_rnn_sweep.sh build   (the persistent kernels, SN_VK_RNN_PERSIST=1:
#   one dispatch per layer and direction; variants j2s32 and j4s16, each at every workgroup
#   count of PERSIST_WGS="128 256 512" (SN_VK_RNN_PERSIST_WGS; a count the device cannot
#   keep resident fails with a clear error, listed as failed))
#   F16=1 adds --f16 (f16 mode: f16 GEMMs and, for j2s32, f16 recurrent weights)
# A variant the device cannot run (the subgroup ones without shuffles) says why.
set -uo pipefail
build=${1:-build}
runs=${2:-5}
vk=${VK_DEV:-vulkan}
read -r B T I H L <<<"${SHAPE:-4 400 1024 1024 2}"
wave=${WAVE:-0}
variants="j4s16 j4s16u j4s16sg j2s16 j2s16sg j2s32 j2s32sg j1s64 j1s64sg j4s32r" # rnn.c's table
[ "$wave" = 1 ] && variants="j4s16 j2s32" # the ones with a wave form (rnn.c's table)
persist=${PERSIST:-0}
wgs_list="-"
if [ "$persist" = 1 ]; then
  variants="j2s32 j4s16" # the ones with a persistent form (rnn.c's rnn_persist_forms)
  wgs_list=${PERSIST_WGS:-128 256 512}
fi
variants=${VARIANTS:-$variants}
export SN_VK_RNN_WAVE=$wave SN_VK_RNN_PERSIST=$persist
[ -n "${WAVE_CHUNK:-}" ] && export SN_VK_RNN_WAVE_CHUNK=$WAVE_CHUNK
[ -x "$build/bench_lstm" ] || { echo "no $build/bench_lstm: build it (cmake --build $build --target bench_lstm)" >&2; exit 2; }
err=$(mktemp)
trap 'rm -f "$err"' EXIT
echo "machine: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1); $(date -u '+%F %H:%M UTC')"
echo "shape B=$B T=$T I=$I H=$H layers=$L, median of $runs; us per timestep and layer; SN_VK_RNN_WAVE=$wave${WAVE_CHUNK:+ chunk $WAVE_CHUNK} SN_VK_RNN_PERSIST=$persist"
best=""
for cell in lstm gru; do
  flag=""; [ "$cell" = gru ] && flag=--gru
  [ "${F16:-0}" = 1 ] && flag="$flag --f16"
  bestv=""; bestt=""
  for v0 in $variants; do
  for w in $wgs_list; do
    v=$v0; [ "$w" != - ] && v="$v0/w$w"
    if out=$(SN_VK_RNN_VARIANT=$v0 SN_VK_RNN_PERSIST_WGS=${w/-/128} timeout 120 "$build/bench_lstm" --device "$vk" $flag "$runs" 0 "$B" "$T" "$I" "$H" "$L" 2>"$err"); then
      f=$(awk '$1 == "forward" {print $2}' <<<"$out"); b=$(awk '$1 == "backward" {print $2}' <<<"$out")
      t=$(awk '$1 == "fwd+bwd" {print $2}' <<<"$out")
      awk -v c="$cell" -v v="$v" -v f="$f" -v b="$b" -v t="$t" -v n="$T" -v l="$L" 'BEGIN {
        printf "%-5s %-10s fwd %8.2f ms %7.2f us/step   bwd %8.2f ms %7.2f us/step   fwd+bwd %8.2f ms\n",
               c, v, f, f * 1000 / (n * l), b, b * 1000 / (n * l), t }'
      if [ -z "$bestt" ] || awk -v a="$t" -v b="$bestt" 'BEGIN { exit !(a < b) }'; then bestv=$v; bestt=$t; fi
    else
      echo "$cell  $v: failed: $(tail -1 "$err")"
    fi
  done
  done
  best="$best $cell:${bestv:-none}(${bestt:-?} ms)"
done
echo "fastest fwd+bwd:$best"
