#!/usr/bin/env bash
# The CPU LSTM's recurrent loops at many threads: where a timestep goes (each region
# thread's product and cell work against its barrier wait, SN_RNN_PROF=1) under the pool
# switches, and the training step with the recurrence on fewer threads.
#   bench/run_cpu_rnn_threads.sh [BUILD_DIR] [THREADS]    (default: build, nproc)
# On the 16-core hosts the loops took 80-100 us a timestep against ~16 us of arithmetic
# (bench/RESULTS.md, 2026-12-08 00:21): this says whether the threads wait or compute,
# and whether the waits are a few long stalls (a preempted thread) or every step.
set -euo pipefail
build=${1:-build}
th=${2:-$(nproc)}
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(date -u +'%F %T') UTC"
run() { # label, then VAR=value ... -- bench_lstm arguments
  local label=$1; shift
  local ev=()
  while [ "$1" != -- ]; do ev+=("$1"); shift; done
  shift
  local out
  out=$(env ${ev[@]+"${ev[@]}"} SN_RNN_PROF=1 "$build/bench_lstm" "$@" 2>&1)
  echo "== $label: $(echo "$out" | grep -E 'fwd\+bwd' | tr -s ' ')"
  echo "$out" | grep -E "recurrent loop|loop work|barrier wait" | tr -s ' '
}
run "f32, $th threads" -- 3 "$th"
run "f32, $th threads, regions on $((th - 1))" SN_POOL_REGION_THREADS=$((th - 1)) -- 3 "$th"
run "f32, $th threads, SN_POOL_PIN=region" SN_POOL_PIN=region -- 3 "$th"
run "f32, $th threads, SN_GEMM_SPLIT=1" SN_GEMM_SPLIT=1 -- 3 "$th"
run "bf16, $th threads" -- --bf16 3 "$th"
run "f32, $th threads, batch 16" -- 3 "$th" 16
run "GRU f32, $th threads" -- --gru 3 "$th"
for rn in "" $((th - 1)); do
  echo "training step, f32, $th threads, regions on ${rn:-all}: $(SN_POOL_REGION_THREADS=$rn "$build/bench_step" \
    --device cpu --threads "$th" --steps 5 --warmup 1 | grep -oE '"step_ms_median": *[0-9.]+')"
done
