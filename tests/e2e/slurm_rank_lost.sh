#!/usr/bin/env bash
# The collective watchdog under Slurm's srun (a private single-node Slurm on localhost): rank 1 of
# a 2-task job is stopped with SIGSTOP; rank 0 must time out, name it, write flight_0.jsonl and end
# the step non-zero within the deadline + 15 s; the last committed checkpoint loads.
# Skipped (77) when slurm-wlm/munge or Slurm's PMIx plugin are missing or the daemons cannot start.
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
source "$HERE/slurm_local.bash"
slurm_e2e_begin "$@"  # skips (77) where Slurm cannot run here
grep -qw pmix <<<"$(srun --mpi=list 2>&1 || true)" || { echo "skipped: srun has no PMIx plugin"; exit 77; }

TIMEOUT_S=3
prepare_corpus .
SETS=("${TINY_SETS[@]}" --set data.train=data/train --set data.val=data/val
      --set train.micro_batch=1 --set train.threads=1 --set train.steps=1000000
      --set train.eval_every=0 --set checkpoint.every=2 --set log.every=1
      --set train.collective_timeout_s=$TIMEOUT_S --set parallel.dp=2 --set train.run_dir=run)
TAG="slurm_rank_lost_$$"

STRATA_E2E_CASE=$TAG OMP_NUM_THREADS=1 timeout 120 srun -N 1 -n 2 -c 1 --mpi=pmix --cpu-bind=none \
  --kill-on-bad-exit=1 "$STRATA" train "${SETS[@]}" >out.txt 2>&1 &
pid=$!
for _ in $(seq 1 600); do  # 60 s
  grep -q '^step 3/' out.txt 2>/dev/null && break
  sleep 0.1
done
E2E_CMD="srun -n 2 strata train"
cp out.txt "$E2E_OUT/stderr"
grep -q '^step 3/' out.txt || { kill $pid; fail "the job did not reach step 3 in 60 s"; }

victim=""
for p in /proc/[0-9]*; do
  [[ $(readlink "$p/exe" 2>/dev/null) == "$STRATA" ]] || continue
  env_of=$( { tr '\0' '\n' <"$p/environ"; } 2>/dev/null || true)
  grep -qxF "STRATA_E2E_CASE=$TAG" <<<"$env_of" && grep -qx "SLURM_PROCID=1" <<<"$env_of" &&
    victim=${p#/proc/}
done
[[ -n $victim ]] || { kill $pid; fail "rank 1's process not found"; }
t0=$(date +%s.%N)
kill -STOP "$victim"
E2E_RC=0
wait $pid || E2E_RC=$?
took=$(python3 -c "print(round($(date +%s.%N) - $t0, 1))")
kill -KILL "$victim" 2>/dev/null || true
cp out.txt "$E2E_OUT/stderr"

[[ $E2E_RC -ne 0 ]] || fail "the job exited 0"
[[ $E2E_RC -ne 124 ]] || fail "the job hung until the outer timeout"
# The longest deadline (checkpoint I/O, 5x) + 15 s.
python3 -c "import sys; sys.exit(0 if $took <= 5 * $TIMEOUT_S + 15 else 1)" ||
  fail "the job took $took s after SIGSTOP"
echo "srun: exit $E2E_RC $took s after SIGSTOP"
grep -E "error:" out.txt | head -n 1 | cut -c1-400 | sed 's/^/  | /'
expect_stderr_matches "rank 0 of 2: error: collective timeout at step [0-9]+ \((train|checkpoint)\): (world|dp) [a-z_]+ #[0-9]+ did not complete" \
  "the message names step, group, operation and sequence number"
expect_stderr_matches "Did not arrive: world rank 1( \(dp rank 1\))?: no answer to the watchdog" \
  "the stopped rank is named"
expect_file run/flight_0.jsonl
python3 -c "import json, sys; r = [json.loads(l) for l in open(sys.argv[1])]; assert r and r[-1]['done'] is False" \
  run/flight_0.jsonl || fail "run/flight_0.jsonl does not parse"
run "$STRATA" eval --checkpoint run/checkpoints --batches 1 --set parallel.dp=1
expect_exit 0 "eval of the last committed checkpoint"
