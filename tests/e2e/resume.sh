#!/usr/bin/env bash
# Stop and resume: a run stopped by SIGTERM finishes its step, saves a checkpoint and exits 143
# (128 + 15); the same command run again resumes ("resumed from ...") and finishes. The losses
# of every step (as the exact strings in metrics.jsonl) and the final weights equal those of an
# uninterrupted run of the same job.
#
# usage: bash tests/e2e/resume.sh STRATA_BINARY [SOURCE_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
e2e_init "$@"

prepare_corpus .

N=12
# A model big enough that the 11 steps after the first one take a good fraction of a second,
# so SIGTERM (sent as soon as "step 1/" is logged) reliably arrives while the run is going.
# If the run still finishes first, the attempt is repeated with longer sequences.
job_for_attempt() {  # attempt -> JOB array
  local seq=$((128 << $1))
  JOB=(--set model.dim=128 --set model.n_layers=2 --set model.n_heads=4 --set model.n_kv_heads=2
    --set model.ffn_dim=256 --set model.layer_pattern=LS --set data.seq_len=$seq
    --set train.global_batch=8 --set train.micro_batch=2 --set train.threads=2
    --set data.train=data/train --set data.val=data/val --set train.eval_every=4
    --set train.eval_batches=1 --set train.steps=$N --set optim.warmup_steps=2
    --set checkpoint.every=4 --set checkpoint.keep_last=0 --set log.every=1)
}

stopped=0
for attempt in 0 1 2; do
  job_for_attempt $attempt
  rm -rf ref stop
  # ---- the uninterrupted run ------------------------------------------------------------------
  run "$STRATA" train "${JOB[@]}" --set train.run_dir=ref
  expect_exit 0 "uninterrupted run"
  expect_file ref/checkpoints/$(printf 'step_%08d' $N)/manifest.yaml

  # ---- the same job, stopped by SIGTERM after its first step is logged -------------------------
  mkdir stop
  "$STRATA" train "${JOB[@]}" --set train.run_dir=stop >stop/stdout 2>stop/stderr &
  pid=$!
  for _ in $(seq 1 3000); do  # up to 60 s
    grep -q '^step 1/' stop/stderr 2>/dev/null && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.02
  done
  grep -q '^step 1/' stop/stderr || { cat stop/stderr >&2; fail "the run never logged step 1"; }
  kill -TERM $pid 2>/dev/null || true
  rc=0
  wait $pid || rc=$?
  if [[ $rc -eq 0 ]]; then
    echo "note: attempt $attempt finished all $N steps before SIGTERM arrived; retrying bigger" >&2
    continue
  fi
  E2E_CMD="strata train ... (SIGTERM after step 1)"
  E2E_RC=$rc
  cp stop/stdout stop/stderr "$E2E_OUT/"
  expect_exit 143 "run stopped by SIGTERM"
  expect_stderr_matches '^stopped by signal 15 after step [0-9]+ \(checkpoint saved\)$'
  stop_step=$(sed -nE 's/^stopped by signal 15 after step ([0-9]+) .*/\1/p' stop/stderr)
  [[ $stop_step -ge 1 && $stop_step -le $N ]] || fail "stopped after step '$stop_step'"
  expect_file stop/checkpoints/$(printf 'step_%08d' "$stop_step")/manifest.yaml
  [[ "$(cat stop/checkpoints/latest)" == "$(printf 'step_%08d' "$stop_step")" ]] ||
    fail "latest is '$(cat stop/checkpoints/latest)' after stopping at step $stop_step"
  n_before=$(metrics_losses stop/metrics.jsonl | wc -l)
  [[ $n_before -eq $stop_step ]] ||
    fail "metrics.jsonl has $n_before steps after stopping at step $stop_step"
  stopped=1
  break
done
[[ $stopped -eq 1 ]] || fail "every attempt finished before SIGTERM arrived: could not test resume"
echo "stopped after step $stop_step of $N (attempt $attempt)"

# ---- the same command again: resumes and finishes -----------------------------------------------
run "$STRATA" train "${JOB[@]}" --set train.run_dir=stop
expect_exit 0 "resumed run"
expect_stderr_contains "resumed from stop/checkpoints/$(printf 'step_%08d' "$stop_step") at step $stop_step"
if [[ $stop_step -lt $N ]]; then
  expect_stderr_contains "step $((stop_step + 1))/$N | loss"
  if grep -q "^step $stop_step/$N |" "$E2E_OUT/stderr"; then
    fail "the resumed run repeated step $stop_step"
  fi
fi
expect_stderr_contains "checkpoint: saved step $N to stop/checkpoints/"

# ---- same losses, step by step, as exact strings ---------------------------------------------------
diff <(metrics_losses ref/metrics.jsonl) <(metrics_losses stop/metrics.jsonl) >&2 ||
  fail "the stopped-and-resumed run's losses differ from the uninterrupted run's (diff above)"
[[ $(metrics_losses stop/metrics.jsonl | wc -l) -eq $N ]] || fail "the resumed run has not $N steps"
# The validation losses too (steps 4, 8, 12), and the final weights.
python3 - ref/metrics.jsonl stop/metrics.jsonl <<'EOF' || fail "val_loss after resume differs"
import re, sys
def vals(p):
    d = {}
    for line in open(p):
        m = re.search(r'"step":(\d+),.*"val_loss":([^,}]+)', line)
        if m:
            d[int(m.group(1))] = m.group(2)
    return d
a, b = vals(sys.argv[1]), vals(sys.argv[2])
assert sorted(a) == [4, 8, 12], a
assert a == b, f"uninterrupted {a} vs resumed {b}"
EOF
run "$STRATA" export --checkpoint ref/checkpoints --output ref.safetensors
expect_exit 0 "export ref"
run "$STRATA" export --checkpoint stop/checkpoints --output stop.safetensors
expect_exit 0 "export resumed"
cmp -s ref.safetensors stop.safetensors ||
  fail "the final weights of the resumed run differ from the uninterrupted run's"

# ---- a finished run, started again, has nothing left to do --------------------------------------
run "$STRATA" train "${JOB[@]}" --set train.run_dir=stop
expect_exit 0 "rerun of a finished job"
expect_stderr_contains "resumed from stop/checkpoints/$(printf 'step_%08d' $N) at step $N"
if grep -q '| loss' "$E2E_OUT/stderr"; then fail "a finished run trained again"; fi
[[ $(metrics_losses stop/metrics.jsonl | wc -l) -eq $N ]] || fail "metrics.jsonl grew on a finished run"
