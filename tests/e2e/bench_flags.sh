#!/usr/bin/env bash
# The step benchmark's flags are checked: a value that is not a whole number, out of range, or
# a model shape the model refuses exits 2 with a message naming it (std::stoll and the model's
# exceptions used to end the process with SIGABRT, --micro-batch 0 with SIGFPE, and
# --micro-batch 3 ran 3 of the 4 sequences).
#
# usage: bash tests/e2e/bench_flags.sh STRATA_BINARY [SOURCE_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
e2e_init "$@"

BENCH="$(dirname "$STRATA")/bench/step_bench"
[[ -x "$BENCH" ]] || fail "step_bench not built next to $STRATA"

for flag in --steps --warmup --threads --dim --layers --seq --vocab --micro-batch --queue-depth \
    --block-kb --writes-in-flight; do
  for bad in x 3x ""; do
    run "$BENCH" "$flag" "$bad"
    expect_exit 2 "$flag '$bad'"
    expect_stderr_contains "step_bench: $flag: expected a whole number, got '$bad'" "$flag '$bad'"
  done
done
for range in "--steps 0" "--warmup -1" "--threads 0"; do
  # shellcheck disable=SC2086  # the flag and its value, split on purpose
  run "$BENCH" $range
  expect_exit 2 "$range"
  expect_stderr_contains "expected --steps >= 1, --warmup >= 0, --threads >= 1" "$range"
done
for range in "--seq 0" "--micro-batch 0" "--micro-batch 3"; do
  # shellcheck disable=SC2086
  run "$BENCH" $range
  expect_exit 2 "$range"
  expect_stderr_contains "expected --seq >= 1 and --micro-batch dividing the batch of 4" "$range"
done
# A shape the model refuses: its own message, not an uncaught exception (SIGABRT).
run "$BENCH" --dim 100 --steps 1 --warmup 0
expect_exit 2 "--dim 100"
expect_stderr_contains "step_bench: model.n_heads: dim (100) must be divisible by n_heads (8)"
run "$BENCH" --steps
expect_exit 2 "--steps without a value"
expect_stderr_contains "step_bench: --steps needs a value"
echo "PASS: bench_flags"
