#!/usr/bin/env bash
# The other benchmarks' flags are checked as step_bench's are (bench_flags.sh): a value that is
# not a whole number (a comma list's items too), a size that crashed, or a model shape the config
# refuses exits 2 with a message naming it, before MPI starts or any file is written. Before:
# std::stoll ended lasp_bench, pipeline_bench, vocab_bench and zero_bench with SIGABRT (io_bench
# printed "stoll"), "3x" passed as 3; --vocab 0 raised SIGFPE, pipeline_bench --pp 0 hung,
# lasp_bench --chunk 0 and a shape the config refuses aborted on an uncaught exception, io_bench
# --qd 0 and --bs 1x failed the engine's internal checks. The MPI benchmarks run here as one
# process without mpirun (World: a SelfComm, no MPI).
#
# usage: bash tests/e2e/bench_flags_more.sh STRATA_BINARY [SOURCE_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
e2e_init "$@"

BENCH_DIR="$(dirname "$STRATA")/bench"
for b in lasp_bench pipeline_bench vocab_bench zero_bench io_bench gemm_peak; do
  [[ -x "$BENCH_DIR/$b" ]] || fail "$b not built next to $STRATA"
done

# bench_case PROGRAM EXPECTED_STDERR ARGS...: exits 2 with the message, quickly (a hang or a
# signal is a failure, not a wait).
bench_case() {
  local program=$1 expected=$2
  shift 2
  run timeout 60 "$BENCH_DIR/$program" "$@"
  expect_exit 2 "$program $*"
  expect_stderr_contains "$expected" "$program $*"
}

# Not a whole number: the flag and the value in the message.
malformed() {
  local program=$1 flag=$2 bad
  for bad in x 3x ""; do
    bench_case "$program" "$program: $flag: expected a whole number, got '$bad'" "$flag" "$bad"
  done
}
malformed lasp_bench --heads
malformed lasp_bench --iters
malformed pipeline_bench --dim
malformed pipeline_bench --steps
malformed vocab_bench --vocab
malformed vocab_bench --head-seq
malformed zero_bench --micro-batch
malformed zero_bench --steps
malformed io_bench --mib
malformed io_bench --qd
malformed gemm_peak --threads  # atoi read "3x" as 3 and "x" as 0 (then the usage)

# An item of a comma list names its flag.
bench_case lasp_bench "lasp_bench: --lens: expected a whole number, got 'x'" --lens 2048,x
bench_case lasp_bench "lasp_bench: --lens: expected a whole number, got '3x'" --lens 3x
bench_case pipeline_bench "pipeline_bench: --micro-batches: expected a whole number, got 'x'" \
  --micro-batches 4,x
bench_case pipeline_bench "pipeline_bench: --micro-batches: expected a whole number, got '8y'" \
  --micro-batches 4,8y

# Sizes that crashed.
bench_case lasp_bench "lasp_bench: expected --heads, --dh, --chunk and --batch >= 1" --chunk 0
bench_case lasp_bench "lasp_bench: --lens: expected sequence lengths >= 1, got -64" --lens -64
bench_case pipeline_bench "pipeline_bench: --pp: expected a value >= 1, got 0" --pp 0
bench_case pipeline_bench "pipeline_bench: --vocab: expected a value >= 1, got 0" --vocab 0
bench_case pipeline_bench "pipeline_bench: --micro-batch: expected a value >= 1, got 0" \
  --micro-batch 0
bench_case vocab_bench "vocab_bench: --head-vocab: expected a value >= 1, got 0" --head-vocab 0
bench_case vocab_bench "vocab_bench: --micro-batch: expected a value >= 1, got 0" --micro-batch 0
bench_case zero_bench "zero_bench: --vocab: expected a value >= 1, got 0" --vocab 0
bench_case io_bench "io_bench: --qd: expected a queue depth from 1 to 4096, got 0" --qd 0
bench_case io_bench "io_bench: --mib: expected a size in MiB from 1 to 1048576, got 0" --mib 0
bench_case io_bench "io_bench: --bs: expected a multiple of 4 KiB from 4k to 1G" --bs 1x
bench_case io_bench "io_bench: --backend: expected both, io_uring or threads, got 'foo'" \
  --backend foo

# A shape the config refuses: its own message, on every rank before any run.
shape="dim (100) must be divisible by n_heads (8)"
bench_case pipeline_bench "$shape" --dim 100 --heads 8
bench_case vocab_bench "$shape" --dim 100 --heads 8
bench_case zero_bench "$shape" --dim 100 --heads 8
bench_case zero_bench "zero_bench: --set train.global_batch=3: expected a multiple of" \
  --global-batch 3 --micro-batch 2

echo "PASS: bench_flags_more"
