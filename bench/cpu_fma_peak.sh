#!/usr/bin/env bash
# AVX-512 FMA throughput per core with 1, 2, 4 and 16 cores busy at once (one pinned
# single-thread loop per core): the arithmetic peak the CPU benchmarks compare against.
#   bash bench/cpu_fma_peak.sh
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
gcc -O2 -o "$dir/fma" "$(dirname "$0")/cpu_fma_peak.c"
for n in $(printf "%s\n" 1 2 4 "$(nproc)" | awk -v m="$(nproc)" '$1 <= m' | sort -un); do
  for c in $(seq 0 $((n - 1))); do (taskset -c "$c" "$dir/fma" 2>/dev/null | tail -1 >"$dir/out.$c") & done
  wait
  echo "$n cores busy, GFLOP/s per core: $(cat "$dir"/out.* | tr '\n' ' ')"
  rm -f "$dir"/out.*
done
