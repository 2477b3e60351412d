#!/bin/sh
# Fuzzes the list-file parser: tests/fuzz/run_fuzz_listfile.sh [seconds] (default 30).
# Needs clang with libFuzzer. Exits non-zero on a crash, leak or sanitizer report.
set -eu
secs=${1:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${TMPDIR:-/tmp}/sn_fuzz_listfile
mkdir -p "$work/corpus"
cp "$root"/tests/fuzz/corpus_listfile/* "$work/corpus/"
clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$root/include" -I"$root/src" \
  "$root/tests/fuzz/fuzz_listfile.c" "$root/src/data/listfile.c" "$root/src/core/status.c" \
  -o "$work/fuzz_listfile"
"$work/fuzz_listfile" -max_total_time="$secs" -max_len=4096 -print_final_stats=1 "$work/corpus"
