#!/usr/bin/env bash
# The collective watchdog under mpirun (README: "When a rank is lost"): a rank stopped with
# SIGSTOP, stuck in a long computation (STRATA_FAULT) or killed with -9, at dp=2 (ZeRO 0 and 3)
# at sp=2 (kill -9 at both), and stalled at pp=2 (the survivor names the pipeline action, stage
# and micro-batch it waits for). Each job must end non-zero within the deadline + 15 s, the survivor naming the
# step, the group, the operation and the rank that did not arrive (with kill -9, mpirun ends the
# job itself and names the rank); the survivor's flight_0.jsonl parses as JSON lines; and the
# last committed checkpoint loads. The seven jobs run side by side: they mostly wait.
set -euo pipefail
source "$(dirname "$0")/lib.bash"
e2e_init "$@"

require_mpirun
MPIRUN+=(-np 2)
TIMEOUT_S=3
prepare_corpus .
SETS=("${TINY_SETS[@]}" --set data.train=data/train --set data.val=data/val
      --set train.micro_batch=1 --set train.threads=1 --set train.steps=1000000
      --set train.eval_every=0 --set checkpoint.every=2 --set log.every=1
      --set train.collective_timeout_s=$TIMEOUT_S)
TAG="rank_lost_$$"

# wait_for FILE REGEX SECONDS: true once FILE has a line matching REGEX.
wait_for() {
  local i
  for i in $(seq 1 $(($3 * 10))); do
    grep -qE -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# rank_pid CASE RANK: the pid of that rank's strata process (found by the case tag the job's
# environment carries, and the rank variable of the launcher).
rank_pid() {
  local p exe env_text
  for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null || true)
    [[ $exe == "$STRATA" ]] || continue
    # Read whole, not piped into grep -q: under pipefail, grep leaving early makes tr's SIGPIPE
    # the pipeline's status (seen with the longer environment of a sanitizer build).
    env_text=$(tr '\0' '\n' <"$p/environ" 2>/dev/null) || continue
    grep -qxF "STRATA_E2E_CASE=$TAG-$1" <<<"$env_text" || continue
    grep -qxE "(OMPI_COMM_WORLD_RANK|SLURM_PROCID)=$2" <<<"$env_text" && echo "${p#/proc/}"
  done
  return 0
}

# drive CASE HOW [--set ...]: runs one job in CASE/, makes rank 1 fail by HOW (stop, kill, stall)
# once training is under way, and records CASE/rc, CASE/t_inject and CASE/t_end.
drive() {
  local name=$1 how=$2 fault="" pattern='^step 3/' pid victim
  shift 2
  mkdir -p "$name"
  [[ $how == stall ]] && fault="stall:rank=1,step=3,seconds=600" && pattern='STRATA_FAULT: stalling'
  STRATA_E2E_CASE=$TAG-$name STRATA_FAULT=$fault timeout 120 "${MPIRUN[@]}" "$STRATA" train \
    "${SETS[@]}" --set train.run_dir="$name" "$@" >"$name/out.txt" 2>&1 &
  pid=$!
  if ! wait_for "$name/out.txt" "$pattern" 60; then
    echo "did not reach '$pattern' in 60 s" >"$name/error"
    kill "$pid" 2>/dev/null || true
    wait "$pid" || true
    return 0
  fi
  date +%s.%N >"$name/t_inject"
  victim=$(rank_pid "$name" 1)
  if [[ -z $victim ]]; then
    echo "rank 1's process was not found once '$pattern' was logged (did the job end?)" >"$name/error"
    kill "$pid" 2>/dev/null || true
    wait "$pid" || true
    return 0
  fi
  case $how in
    stop) kill -STOP $victim ;;
    kill) kill -KILL $victim ;;
  esac
  local rc=0
  wait "$pid" || rc=$?
  date +%s.%N >"$name/t_end"
  echo "$rc" >"$name/rc"
  # A stopped rank the launcher failed to end must not outlive the test.
  for p in $victim; do kill -KILL "$p" 2>/dev/null || true; done
}

# A malformed STRATA_FAULT is bad input: exit 2 naming it.
run env STRATA_FAULT="stall:rank=1" "$STRATA" train "${SETS[@]}" --set train.steps=1 \
  --set train.run_dir=badfault
expect_exit 2 "a malformed STRATA_FAULT"
expect_stderr_contains "STRATA_FAULT='stall:rank=1': rank, step and seconds are required"

drive dp_stop stop --set parallel.dp=2 &
drive dp3_stall stall --set parallel.dp=2 --set parallel.zero_stage=3 &
drive sp_stop stop --set parallel.sp=2 &
drive sp_stall stall --set parallel.sp=2 &
drive dp_kill kill --set parallel.dp=2 &
drive sp_kill kill --set parallel.sp=2 &
drive pp_stall stall --set parallel.pp=2 &
wait

# check CASE: exit, time bound and the checkpoint, common to every case.
check() {
  local name=$1 bound=$2
  E2E_CMD="mpirun -np 2 strata train ($name)"
  cp "$name/out.txt" "$E2E_OUT/stderr" 2>/dev/null || true
  [[ ! -f $name/error ]] || fail "$name: $(cat "$name/error")"
  E2E_RC=$(cat "$name/rc")
  [[ $E2E_RC -ne 0 ]] || fail "$name: the job exited 0"
  [[ $E2E_RC -ne 124 ]] || fail "$name: the job hung until the outer timeout"
  local took
  took=$(python3 -c "print(round($(cat "$name/t_end") - $(cat "$name/t_inject"), 1))")
  python3 -c "import sys; sys.exit(0 if $took <= $bound else 1)" ||
    fail "$name: the job took $took s after the fault, more than $bound s"
  echo "$name: exit $E2E_RC $took s after the fault"
  grep -E "error:|noticed" "$name/out.txt" | head -n 2 | cut -c1-400 | sed 's/^/  | /' 
  # The last committed checkpoint loads.
  run "$STRATA" eval --checkpoint "$name/checkpoints" --batches 1 --set parallel.dp=1 \
    --set parallel.sp=1 --set parallel.zero_stage=0
  expect_exit 0 "$name: eval of the last committed checkpoint"
  E2E_CMD="mpirun -np 2 strata train ($name)"
  cp "$name/out.txt" "$E2E_OUT/stderr"
}

# check_flight FILE [pending]: JSON lines; with "pending", the operation rank 0 names as not
# completed ("<group> <op> #<seq> did not complete", in the captured stderr) is in the record and
# not complete. Not necessarily the last record: a nonblocking reduction may be waited for after
# a later blocking operation (the stop poll) has completed.
check_flight() {
  expect_file "$1"
  python3 - "$1" "${2:-}" "$E2E_OUT/stderr" <<'PY' || fail "$1 is not the flight record expected"
import json, re, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert recs, "empty"
for r in recs:
    for k in ("op", "group", "seq", "bytes", "t_start", "t_end", "step"):
        assert k in r, (k, r)
if sys.argv[2] == "pending":
    text = open(sys.argv[3]).read()
    m = re.search(r"rank 0 of 2: error: .*?(\S+) (\w+) #(\d+) did not complete", text)
    assert m, "rank 0 names no operation that did not complete"
    group, op, seq = m.group(1), m.group(2), int(m.group(3))
    named = [r for r in recs if r["group"] == group and r["op"] == op and r["seq"] == seq]
    assert named, ("not in the record", group, op, seq)
    assert named[-1]["done"] is False and named[-1]["t_end"] is None, named[-1]
PY
}

# Stopped or stalled rank 1: the survivor names it. The deadline is 3 s, 5x in checkpoint I/O (a
# SIGSTOP may land in a save), plus the 3 s exchange; bound: the longest deadline + 15 s.
for name in dp_stop dp3_stall sp_stop sp_stall; do
  check $name $((5 * TIMEOUT_S + 15))
  expect_stderr_matches "rank 0 of 2: error: collective timeout at step [0-9]+ \((train|checkpoint)\): (world|dp|sp|dp\*sp) [a-z_]+ #[0-9]+ did not complete within [0-9.]+ s on world rank 0" \
    "$name: the message names step, group, operation and sequence number"
  expect_stderr_matches "Did not arrive: world rank 1( \((dp|sp|dp\*sp) rank 1\))?: no answer to the watchdog" \
    "$name: the message names the missing rank"
  check_flight "$name/flight_0.jsonl" pending
done
# The stall is in step 3 and the survivor waits in the training phase: the plain deadline.
for name in dp3_stall sp_stall; do
  expect_stderr_contains "collective timeout at step 3 (train)" "$name: the stalled step"
  took=$(python3 -c "print($(cat $name/t_end) - $(cat $name/t_inject))")
  python3 -c "import sys; sys.exit(0 if $took <= $TIMEOUT_S + 15 else 1)" ||
    fail "$name: $took s after the stall, more than the deadline + 15 s"
done

# A stalled pipeline stage: the other waits for its message, and says which.
check pp_stall $((TIMEOUT_S + 15))
expect_stderr_matches "rank 0 of 2: error: pipeline RECV_(F|B) of stage 0 micro-batch [0-9]+ \(pp rank 0, peer pp rank 1\): collective timeout at step 3 \(train\): pp irecv #[0-9]+ did not complete" \
  "pp_stall: the message names the action, stage, micro-batch and peer"
expect_stderr_matches "Did not arrive: world rank 1 \(pp rank 1\): no answer to the watchdog" \
  "pp_stall: the message names the missing rank"
check_flight pp_stall/flight_0.jsonl pending

# kill -9: mpirun notices first, ends the job and names the rank.
for name in dp_kill sp_kill; do
  check $name $((5 * TIMEOUT_S + 15))
  expect_stderr_matches "rank 1 with PID [0-9]+ on node .* (exited on signal 9|Killed)" \
    "$name: mpirun names the killed rank"
  # The survivor wrote its flight record when mpirun's SIGTERM reached it in a wait.
  check_flight $name/flight_0.jsonl
done
