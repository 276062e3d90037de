#!/usr/bin/env bash
# Stop signals are honoured within one block's compute everywhere (issue 9):
#  - during a long evaluation (it ran to its end before, ignoring SIGTERM, with no checkpoint);
#  - part-way through a step: the step is dropped, the checkpoint is of the last whole step and
#    the resumed run's losses equal an uninterrupted run's;
#  - while a swap I/O request hangs (STRATA_IO_DELAY_MS stands in for a hung device): the run
#    ends 128+signal within the grace period, leaving the last committed checkpoint.
#
# usage: bash tests/e2e/stop_signals.sh STRATA_BINARY [SOURCE_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
e2e_init "$@"

prepare_corpus .
BASE=("${TINY_SETS[@]}" --set data.train=data/train --set data.val=data/val --set log.every=1
      --set checkpoint.keep_last=0)

# start_run DIR ARGS...: strata train in the background, logs in DIR; sets PID.
start_run() {
  local dir=$1
  shift
  mkdir -p "$dir"
  "$STRATA" train "$@" --set train.run_dir="$dir" >"$dir/stdout" 2>"$dir/stderr" &
  PID=$!
}
# wait_for_log DIR REGEX: until stderr matches (60 s at most).
wait_for_log() {
  for _ in $(seq 1 600); do
    grep -qE "$2" "$1/stderr" 2>/dev/null && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$1/stderr" >&2
  fail "never logged /$2/ in $1"
}
# stop_and_time DIR SIG: sends SIG, waits; sets RC and SECS (how long the exit took).
stop_and_time() {
  local t0=$SECONDS
  kill -0 "$PID" 2>/dev/null || { tail -5 "$1/stderr" >&2; fail "$1: the run ended before SIG$2"; }
  kill "-$2" "$PID"
  RC=0
  wait "$PID" || RC=$?
  SECS=$((SECONDS - t0))
  E2E_CMD="strata train ($1, SIG$2)"
  E2E_RC=$RC
  cp "$1/stdout" "$1/stderr" "$E2E_OUT/"
}

# ---- SIGTERM during a long evaluation --------------------------------------------------------
start_run eval "${BASE[@]}" --set train.steps=50 --set train.eval_every=2 --set train.eval_batches=10000000
wait_for_log eval '^step 2/50'
sleep 1
stop_and_time eval TERM
expect_exit 143 "SIGTERM during the evaluation"
[[ $SECS -le 10 ]] || fail "the evaluation took $SECS s to honour SIGTERM"
expect_stderr_contains "in the evaluation after step 2"
expect_stderr_contains "stopped by signal 15 after step 2 (checkpoint saved)"
expect_file eval/checkpoints/step_00000002/manifest.yaml
python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' eval/metrics.jsonl ||
  fail "metrics.jsonl is not JSON lines"

# ---- SIGTERM part-way through a step: dropped, resumed bit-identically --------------------------
# 32 micro-batches of 2 blocks: a step has 128 block boundaries, so SIGTERM lands inside one.
STEP_JOB=("${BASE[@]}" --set train.global_batch=64 --set train.micro_batch=2 --set data.seq_len=128
          --set train.steps=30 --set train.eval_every=0 --set train.eval_batches=1)
run "$STRATA" train "${STEP_JOB[@]}" --set train.run_dir=ref
expect_exit 0 "uninterrupted run"
start_run mid "${STEP_JOB[@]}"
wait_for_log mid '^step 2/30'
stop_and_time mid TERM
expect_exit 143 "SIGTERM part-way through a step"
expect_stderr_matches 'stopped by signal 15 while before the (forward|backward) of unit [0-9]+ in step [0-9]+: that step is dropped'
stop_step=$(sed -nE 's/^stopped by signal 15 after step ([0-9]+) .*/\1/p' mid/stderr)
[[ -n $stop_step ]] || fail "no 'stopped by signal 15 after step N' line"
expect_file "mid/checkpoints/$(printf 'step_%08d' "$stop_step")/manifest.yaml"
run "$STRATA" train "${STEP_JOB[@]}" --set train.run_dir=mid
expect_exit 0 "resumed run"
diff <(metrics_losses ref/metrics.jsonl) <(metrics_losses mid/metrics.jsonl) >&2 ||
  fail "losses after a stop part-way through step $((stop_step + 1)) differ from the uninterrupted run's"

# ---- SIGTERM while a swap read or write hangs ----------------------------------------------------
mkdir -p swapdir
export STRATA_IO_BACKEND=threads
STRATA_IO_DELAY_MS=600000 start_run hung "${BASE[@]}" --set train.steps=50 --set offload.policy=swap \
  --set offload.tier=nvme --set offload.dir=swapdir --set offload.keep_last=1 --set model.n_layers=3
sleep 3
stop_and_time hung TERM
expect_exit 143 "SIGTERM while swap I/O hangs"
[[ $SECS -le 12 ]] || fail "a hung swap request kept the run $SECS s after SIGTERM"
expect_stderr_contains "while waiting for swap I/O, which did not finish within 5 s of the stop"
unset STRATA_IO_BACKEND

# ---- SIGTERM to mpirun with pipeline stages: honoured at the step's end, resumed exactly ------
# With pp > 1 a stage leaving mid-step would leave its neighbour waiting for a message, so the
# ranks agree on a stop once per step (README: "Pipeline parallelism"). mpirun forwards SIGTERM
# to the ranks and exits non-zero itself.
if command -v mpirun >/dev/null; then
  require_mpirun
  PP_JOB=("${BASE[@]}" --set train.global_batch=32 --set train.micro_batch=2 --set data.seq_len=128
          --set train.steps=400 --set train.eval_every=0 --set train.threads=1 --set parallel.pp=2
          --set optim.schedule=constant)  # the lr must not depend on train.steps, changed below
  mkdir -p pp
  "${MPIRUN[@]}" -np 2 "$STRATA" train "${PP_JOB[@]}" --set train.run_dir=pp >pp/stdout 2>pp/stderr &
  PID=$!
  wait_for_log pp '^step 2/400'
  kill -TERM "$PID"
  RC=0
  wait "$PID" || RC=$?
  E2E_CMD="mpirun -np 2 strata train (pp=2, SIGTERM)"
  E2E_RC=$RC
  cp pp/stdout pp/stderr "$E2E_OUT/"
  [[ $RC -ne 0 ]] || fail "mpirun exited 0 after SIGTERM"
  expect_stderr_matches 'stopped by signal 15 after step [0-9]+ \(checkpoint saved\)'
  stop_step=$(sed -nE 's/^stopped by signal 15 after step ([0-9]+) .*/\1/p' pp/stderr)
  [[ $stop_step -lt 400 ]] || fail "the run was not stopped before its end"
  run "${MPIRUN[@]}" -np 2 "$STRATA" train "${PP_JOB[@]}" --set train.run_dir=ppref \
    --set train.steps=$((stop_step + 3))
  expect_exit 0 "uninterrupted pp=2 run"
  run "${MPIRUN[@]}" -np 2 "$STRATA" train "${PP_JOB[@]}" --set train.run_dir=pp \
    --set train.steps=$((stop_step + 3))
  expect_exit 0 "resumed pp=2 run"
  diff <(metrics_losses ppref/metrics.jsonl) <(metrics_losses pp/metrics.jsonl) >&2 ||
    fail "losses of the pp=2 run resumed after step $stop_step differ from the uninterrupted run's"
fi
