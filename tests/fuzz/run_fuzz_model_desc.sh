#!/bin/sh
# Builds the layer-list (model description) fuzz target with clang (libFuzzer +
# ASan + UBSan) and runs it for N seconds (default 30) over a copy of the seed corpus.
# Usage: tests/fuzz/run_fuzz_model_desc.sh [seconds]
set -eu
secs=${1:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${SN_FUZZ_DIR:-/tmp/sinter-fuzz}
mkdir -p "$out/corpus_model_desc"
cp "$root"/tests/fuzz/corpus_model_desc/* "$out/corpus_model_desc/" 2>/dev/null || true
clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$root/include" -I"$root/src" \
  "$root/src/core/status.c" "$root/src/io/json.c" "$root/src/io/model_yaml.c" "$root/src/nn/model_desc.c" \
  "$root/tests/fuzz/fuzz_model_desc.c" -lyaml -lm -o "$out/fuzz_model_desc"
cd "$out"
exec ./fuzz_model_desc -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 corpus_model_desc
