#!/bin/sh
# Builds the safetensors fuzz target with clang (libFuzzer + ASan + UBSan) and
# runs it for N seconds (default 30) over a copy of the seed corpus.
# Usage: tests/fuzz/run_fuzz_safetensors.sh [seconds]
set -eu
secs=${1:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${SN_FUZZ_DIR:-/tmp/sinter-fuzz}
mkdir -p "$out/corpus_safetensors"
cp "$root"/tests/fuzz/corpus_safetensors/* "$out/corpus_safetensors/" 2>/dev/null || true
clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$root/include" -I"$root/src" \
  "$root/src/core/status.c" "$root/src/io/json.c" "$root/src/io/safetensors.c" \
  "$root/tests/fuzz/fuzz_safetensors.c" -lm -o "$out/fuzz_safetensors"
cd "$out"
exec ./fuzz_safetensors -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 corpus_safetensors
