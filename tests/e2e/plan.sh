#!/usr/bin/env bash
# strata plan against strata train: for every job in configs/, the predicted peak of every memory
# category on every rank within 10% of what a short run measures (tests/e2e/plan_compare.py says
# how small categories and more than one swapped set in flight are compared), and the communication per axis
# exactly; then a few layouts the shipped jobs do not cover (bf16, ZeRO-1/2, recompute). A job
# over train.max_memory_mb exits 2 naming the category that overflows and what would fit.
set -euo pipefail
source "$(dirname "$0")/lib.bash"
e2e_init "$@"

require_mpirun
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
prepare_corpus .
COMPARE="$SRC_DIR/tests/e2e/plan_compare.py"

# plan_and_train NAME JOB [--set ...]: `strata plan --json`, two steps of `strata train` on the
# ranks the layout needs, then the comparison (every figure printed, for the log).
plan_and_train() {
  local name=$1 job=$2
  shift 2
  local sets=(--set data.train=data/train --set data.val=data/val --set train.steps=2
              --set train.eval_every=0 --set checkpoint.every=0 --set train.run_dir="run_$name" "$@")
  run "$STRATA" plan "$job" "${sets[@]}" --json
  expect_exit 0 "strata plan $name"
  cp "$E2E_OUT/stdout" "plan_$name.json"
  local np
  np=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["ranks"]))' "plan_$name.json")
  if [[ $np -eq 1 ]]; then
    run "$STRATA" train "$job" "${sets[@]}" --set train.threads=2
  else
    run "${MPIRUN[@]}" -np "$np" "$STRATA" train "$job" "${sets[@]}" --set train.threads=1
  fi
  expect_exit 0 "strata train $name on $np rank(s)"
  python3 "$COMPARE" "plan_$name.json" "run_$name" "$name" --table ||
    fail "strata plan's prediction for $name is off"
}

for job in "$SRC_DIR"/configs/*.yaml; do
  name=$(basename "$job" .yaml)
  plan_and_train "$name" "$job"
done
TINY="$SRC_DIR/configs/tiny.yaml"
plan_and_train tiny_bf16 "$TINY" --set train.precision=bf16
# The run says once which kernels its bf16 GEMMs run on, and on a CPU without AVX512-BF16 or
# AMX (no avx512_bf16 or amx_bf16 flag) that bf16 is emulated there.
[[ $(grep -c "strata: bf16 precision, GEMMs on" "$E2E_OUT/stderr") -eq 1 ]] ||
  fail "tiny_bf16: the bf16 kernels are not logged exactly once"
if ! grep -qwE "avx512_bf16|amx_bf16" /proc/cpuinfo; then
  [[ $(grep -c "bf16 is emulated" "$E2E_OUT/stderr") -eq 1 ]] ||
    fail "tiny_bf16: a CPU without bf16 units is not logged exactly once"
fi
plan_and_train tiny_zero1_bf16 "$TINY" --set train.precision=bf16 --set parallel.dp=2 \
  --set parallel.zero_stage=1
plan_and_train tiny_zero2 "$TINY" --set parallel.dp=2 --set parallel.zero_stage=2
plan_and_train tiny_recompute "$TINY" --set offload.policy=recompute
plan_and_train tiny_sp2_bf16 "$TINY" --set parallel.sp=2 --set train.precision=bf16
# Two swapped sets' writes in flight: io depends on the device's speed, within the range given.
plan_and_train swap_nvme_2_in_flight "$SRC_DIR/configs/swap_nvme.yaml" \
  --set offload.writes_in_flight=2
# The other schedules: their send release points (parallel/send_release.h), and zb-h1's weight
# GEMMs deferred from I to W (models/deferred_grads.h) in both precisions.
PP4="$SRC_DIR/configs/pp4_1f1b.yaml"
plan_and_train pp4_zb "$PP4" --set parallel.schedule=zb-h1
plan_and_train pp4_zb_bf16 "$PP4" --set parallel.schedule=zb-h1 --set train.precision=bf16
plan_and_train pp4_interleaved "$PP4" --set parallel.schedule=interleaved \
  --set parallel.virtual_stages=2

# The long-sequence job without its sequence parallelism does not fit its 512 MiB: exit 2,
# the category named, and layouts that would fit offered (its own sp among them).
run "$STRATA" plan "$SRC_DIR/configs/long_seq_sp4.yaml" --set parallel.sp=1
expect_exit 2 "a layout over train.max_memory_mb"
expect_stderr_contains "over train.max_memory_mb = 512" "the cap is named"
expect_stderr_contains "activations overflows" "the overflowing category is named"
expect_stderr_contains "would fit: " "what would fit is offered"
expect_stderr_contains "parallel.sp: 4" "the job's own sp is among what fits"
expect_stdout_contains "verdict: does not fit" "the table says so too"

# --world: dp follows; a world the layout cannot take is an input error.
run "$STRATA" plan "$SRC_DIR/configs/zero3_dp4.yaml" --world 8
expect_exit 0 "--world 8"
expect_stdout_contains "8 rank(s), pp=1 dp=8" "--world sets dp"
run "$STRATA" plan "$SRC_DIR/configs/pp4_1f1b.yaml" --world 6
expect_exit 2 "--world 6 with pp=4"
expect_stderr_contains "not a multiple of parallel.pp * parallel.sp (4)" "the mismatch is named"
