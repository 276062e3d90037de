#!/usr/bin/env bash
# launch/slurm/train.sbatch on a real (private, single-node, localhost) Slurm cluster: a 2-task
# job trains with the losses of one process and writes both ranks' shards; a TERM to the batch
# shell (what --signal=B:TERM@120 sends before the time limit) makes the ranks save a checkpoint
# and exit 143; submitting the same script again resumes from it.
# Skipped (77) when slurm-wlm/munge are missing or the daemons cannot start here.
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
source "$HERE/slurm_local.bash"
slurm_e2e_begin "$@"  # skips (77) where Slurm cannot run here
SBATCH_SCRIPT=$SRC_DIR/launch/slurm/train.sbatch
export STRATA  # train.sbatch runs $STRATA (sbatch passes the environment)

prepare_corpus .
SETS=("${TINY_SETS[@]}" --set data.train=data/train --set data.val=data/val
      --set train.global_batch=4 --set train.micro_batch=1 --set train.steps=8 --set train.threads=1
      --set train.eval_every=4 --set checkpoint.every=4 --set log.every=1)
# The #SBATCH lines of the script are for a real cluster; the command line overrides them.
SBATCH=(sbatch -N 1 -n 2 --ntasks-per-node=2 -c 1 --time=5)

run "$STRATA" train "${SETS[@]}" --set train.run_dir=one
expect_exit 0 "one process"

# ---- 2 tasks, layout from SLURM_NTASKS, under srun --mpi=pmix (auto) and mpirun ---------------
for launcher in auto mpirun; do
  run env STRATA_LAUNCHER=$launcher timeout 60 "${SBATCH[@]}" --wait --output="$PWD/$launcher.out" \
    "$SBATCH_SCRIPT" "${SETS[@]}" --set train.run_dir=$launcher
  cat $launcher.out >>"$E2E_OUT/stdout" 2>/dev/null || true
  expect_exit 0 "STRATA_LAUNCHER=$launcher sbatch --wait -n 2 train.sbatch"
  grep -qF -- "--set parallel.dp=2" $launcher.out || fail "train.sbatch did not add parallel.dp=2"
  used=$(grep -oE 'via (srun|mpirun)' $launcher.out | head -n 1 || true)
  [[ -n $used ]] || fail "train.sbatch did not name its launcher"
  echo "STRATA_LAUNCHER=$launcher: $used"
  expect_file $launcher/checkpoints/step_00000008/shard_r00000.bin
  expect_file $launcher/checkpoints/step_00000008/shard_r00001.bin
  python3 - one/metrics.jsonl $launcher/metrics.jsonl <<'PY' || fail "2-task Slurm losses ($used) differ from one process"
import json, sys
a = {d["step"]: d for d in map(json.loads, open(sys.argv[1]))}
b = {d["step"]: d for d in map(json.loads, open(sys.argv[2]))}
assert sorted(a) == sorted(b) == list(range(1, 9)), (sorted(a), sorted(b))
for s in a:
    for k in ("loss", "val_loss"):
        if k in a[s]:
            assert abs(a[s][k] - b[s][k]) <= 2e-5 * abs(a[s][k]), (s, k, a[s][k], b[s][k])
PY
done

# ---- TERM before the time limit, then resubmission ----------------------------------------------
LONG=("${SETS[@]}" --set train.steps=1000000 --set train.eval_every=1000000
      --set checkpoint.every=1000000 --set train.run_dir=sig)
E2E_CMD="sbatch train.sbatch (long job)"
JOB=$("${SBATCH[@]}" --parsable --output="$PWD/sig.out" "$SBATCH_SCRIPT" "${LONG[@]}")
for _ in $(seq 1 100); do  # 20 s
  grep -q '^step 3/' sig.out 2>/dev/null && break
  sleep 0.2
done
grep -q '^step 3/' sig.out || { cp sig.out "$E2E_OUT/stdout" 2>/dev/null || true; fail "long job did not start training in 20 s"; }
# What --signal=B:TERM@120 does at the time limit: TERM to the batch shell only.
scancel --batch --signal=TERM "$JOB"
for _ in $(seq 1 150); do  # 30 s
  [[ -z $(squeue -h -j "$JOB" 2>/dev/null) ]] && break
  sleep 0.2
done
cp sig.out "$E2E_OUT/stdout"
[[ -z $(squeue -h -j "$JOB" 2>/dev/null) ]] || fail "job $JOB still running 30 s after TERM"
expect_stdout_contains "stopped by signal 15" "the ranks saw SIGTERM"
EXIT=$(scontrol show job "$JOB" 2>/dev/null | grep -oE ' ExitCode=[0-9]+' | head -n 1 | cut -d= -f2 || true)
[[ -z $EXIT || $EXIT == 143 ]] || fail "stopped job exited $EXIT, expected 143"
SAVED=$(cat sig/checkpoints/latest)
expect_file "sig/checkpoints/$SAVED/shard_r00000.bin"
expect_file "sig/checkpoints/$SAVED/shard_r00001.bin"
STEP=$((10#${SAVED#step_}))
[[ $STEP -ge 3 ]] || fail "checkpoint $SAVED is before the logged step 3"

# The same script again (checkpoint.resume: auto): continues from the saved step.
run timeout 60 "${SBATCH[@]}" --wait --output="$PWD/resumed.out" "$SBATCH_SCRIPT" "${LONG[@]}" \
  --set train.steps=$((STEP + 2))
cat resumed.out >>"$E2E_OUT/stdout" 2>/dev/null || true
expect_exit 0 "resubmitted job"
grep -qF "resumed from sig/checkpoints/$SAVED at step $STEP (written by 2 ranks)" resumed.out ||
  fail "resubmission did not resume from $SAVED"
grep -q "^step $((STEP + 2))/$((STEP + 2)) " resumed.out || fail "resubmission did not finish"
