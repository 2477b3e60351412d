#!/bin/sh
# Builds tests/fuzz/fuzz_cli.c (the command-line parsers of src/cli with the
# real config loader) with libFuzzer + ASan + UBSan and runs it in an empty
# sandbox folder. usage: tests/fuzz/run_fuzz_cli.sh [seconds=30]   (env CC, default clang)
set -eu
secs=${1:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${FUZZ_OUT:-$root/build-fuzz}
mkdir -p "$out/corpus_cli"
rm -rf "$out/cli_sandbox"
mkdir -p "$out/cli_sandbox"
cli="$root/src/cli"
${CC:-clang} -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$root/include" -I"$root/src" -Dmain=sn_cli_main \
  "$root/tests/fuzz/fuzz_cli.c" "$cli/main.c" "$cli/cmd_train.c" "$cli/cmd_enhance.c" "$cli/cmd_eval.c" \
  "$cli/cmd_metrics.c" "$cli/cmd_data.c" "$cli/cli_common.c" "$root/src/io/fs.c" "$root/src/io/config.c" "$root/src/io/model_yaml.c" "$root/src/nn/model_desc.c" "$root/src/io/json.c" \
  "$root/src/core/status.c" \
  -lyaml -lm -lpthread -o "$out/fuzz_cli"
# the commands print usage and errors on every run: closed (libFuzzer and the sanitizers keep their own)
SN_FUZZ_SANDBOX="$out/cli_sandbox" exec "$out/fuzz_cli" -max_total_time="$secs" -max_len=2048 -timeout=10 \
  -rss_limit_mb=2048 -close_fd_mask=3 -artifact_prefix="$out/" "$out/corpus_cli" "$root/tests/fuzz/corpus_cli"
