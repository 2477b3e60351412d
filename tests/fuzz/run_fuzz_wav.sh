#!/bin/sh
# Builds tests/fuzz/fuzz_wav.c with libFuzzer + ASan + UBSan and runs it.
# usage: tests/fuzz/run_fuzz_wav.sh [seconds=30]   (env CC, default clang)
set -eu
secs=${1:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${FUZZ_OUT:-$root/build-fuzz}
mkdir -p "$out/corpus_wav"
${CC:-clang} -g -O1 -std=c11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$root/include" -I"$root/src" \
  "$root/tests/fuzz/fuzz_wav.c" "$root"/src/audio/*.c "$root/src/core/status.c" \
  $(pkg-config --cflags --libs sndfile samplerate fftw3f) -lm -lpthread -o "$out/fuzz_wav"
# Known third-party leak on malformed Ogg (see the file's comment).
export LSAN_OPTIONS="suppressions=$root/tests/fuzz/lsan_wav.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
# New inputs go to $out/corpus_wav; the committed seeds stay read-only.
exec "$out/fuzz_wav" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 \
  -artifact_prefix="$out/" "$out/corpus_wav" "$root/tests/fuzz/corpus_wav"
