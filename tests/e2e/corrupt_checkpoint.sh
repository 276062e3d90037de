#!/usr/bin/env bash
# Damaged checkpoints fail loudly or fall back safely:
#   - one flipped byte, a truncated shard, a deleted shard, a garbled manifest: eval, export and
#     a resuming train exit 2 with a message naming the damaged file, and write nothing;
#   - the newest step directory without manifest.yaml (an aborted save; `latest` still names
#     it), or a garbled `latest`: eval on the root falls back to the newest committed step, and
#     train with checkpoint.resume=auto resumes from it and finishes;
#   - a FIFO, a directory or a symbolic link in place of a shard, the manifest or `latest`, and a
#     step directory that is a symbolic link: refused naming it (exit 2) without ever blocking in
#     open(); every command runs under a timeout so a hang is a failure, not a stuck test.
#
# usage: bash tests/e2e/corrupt_checkpoint.sh STRATA_BINARY [SOURCE_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
e2e_init "$@"

prepare_corpus .

JOB=("${TINY_SETS[@]}" --set data.train=data/train --set data.val=data/val
  --set train.steps=8 --set checkpoint.every=4 --set train.eval_every=0
  --set train.eval_batches=2 --set train.run_dir=run --set checkpoint.resume=auto
  --set log.every=1)
CK=run/checkpoints
S4=$CK/step_00000004
S8=$CK/step_00000008
SHARD=$S8/shard_r00000.bin

run "$STRATA" train "${JOB[@]}"
expect_exit 0 "training"
expect_file $S4/manifest.yaml
expect_file $S8/manifest.yaml
expect_file $SHARD
[[ "$(cat $CK/latest)" == "step_00000008" ]] || fail "latest is '$(cat $CK/latest)'"

run "$STRATA" eval --checkpoint $CK
expect_exit 0 "eval of the intact checkpoint"
expect_stdout_matches '^step 8 val_loss [0-9.]+ batches 2$'
GOOD_VAL=$(last_stdout)
run "$STRATA" eval --checkpoint $S4
expect_exit 0 "eval of step 4"
STEP4_VAL=$(last_stdout)

cp $SHARD shard.orig
SIZE=$(stat -c %s $SHARD)
cp -r $CK pristine   # to restore between cases
cp run/metrics.jsonl pristine_metrics.jsonl

restore() { rm -rf $CK; cp -r pristine $CK; }
# A FIFO in the checkpoint used to block open() forever: a hang must fail the test, not stall it.
strata_t() { timeout -k 5 "${STRATA_E2E_TIMEOUT:-60}" "$STRATA" "$@"; }

BEFORE=""
# expect_damage_reported WHAT FILE: eval (root and step dir), export and a resuming train all
# exit 2 naming FILE, and none of them writes anything inside the checkpoint or an output.
expect_damage_reported() {
  local what=$1 file=$2
  BEFORE=$(tree_snapshot)
  run strata_t eval --checkpoint $CK
  expect_exit 2 "$what: eval of the root"
  expect_stderr_contains "$file" "$what: eval of the root names the file"
  run strata_t eval --checkpoint $S8
  expect_exit 2 "$what: eval of the step dir"
  expect_stderr_contains "$file" "$what: eval of the step dir names the file"
  run strata_t export --checkpoint $CK --output m.safetensors
  expect_exit 2 "$what: export"
  expect_stderr_contains "$file" "$what: export names the file"
  expect_absent m.safetensors
  [[ "$(tree_snapshot)" == "$BEFORE" ]] || fail "$what: eval/export changed files"
  # Resuming from a damaged latest checkpoint is refused (not silently restarted from scratch).
  cp run/config.yaml config.before
  run strata_t train "${JOB[@]}" --set train.steps=12
  expect_exit 2 "$what: train with resume=auto"
  expect_stderr_contains "$file" "$what: train names the file"
  if grep -q '| loss' "$E2E_OUT/stderr"; then fail "$what: train went on training"; fi
  expect_absent $CK/step_00000009
  expect_absent $CK/step_00000012
  [[ "$(cat $CK/latest)" == "step_00000008" ]] || fail "$what: latest changed"
  if ! cmp -s run/config.yaml config.before; then
    fail "$what: a train refused because of the damaged checkpoint overwrote" \
      "run/config.yaml with its own job (train.steps=12), which never ran"
  fi
  rm config.before
}

# ---- one flipped byte in the middle of the shard ------------------------------------------------
python3 - $SHARD <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0xFF
open(p, "wb").write(b)
EOF
cmp -s $SHARD shard.orig && fail "the byte flip did not change the shard"
expect_damage_reported "flipped byte" "$SHARD"
expect_stderr_contains "checksum mismatch"
restore

# ---- truncated shard -------------------------------------------------------------------------------
truncate -s $((SIZE / 2)) $SHARD
expect_damage_reported "truncated shard" "$SHARD"
restore

# ---- deleted shard ---------------------------------------------------------------------------------
rm $SHARD
expect_damage_reported "deleted shard" "$SHARD"
restore

# ---- garbled manifest (committed, but unreadable) ---------------------------------------------------
printf 'step: [unterminated\n' > $S8/manifest.yaml
expect_damage_reported "garbled manifest" "$S8/manifest.yaml"
restore

# ---- not regular files and symbolic links --------------------------------------------------------
# A FIFO in place of the shard, the manifest or `latest`: refused at once, named, nothing read.
rm $SHARD && mkfifo $SHARD
expect_damage_reported "FIFO shard" "$SHARD"
expect_stderr_contains "not a regular file"
restore
rm $S8/manifest.yaml && mkfifo $S8/manifest.yaml
expect_damage_reported "FIFO manifest" "$S8/manifest.yaml"
restore
rm $CK/latest && mkfifo $CK/latest
run strata_t eval --checkpoint $CK
expect_exit 2 "FIFO latest: eval of the root"
expect_stderr_contains "$CK/latest"
run strata_t train "${JOB[@]}" --set train.steps=12
expect_exit 2 "FIFO latest: train with resume=auto"
expect_stderr_contains "$CK/latest"
restore
# A directory in place of the shard.
rm $SHARD && mkdir $SHARD
expect_damage_reported "directory shard" "$SHARD"
expect_stderr_contains "not a regular file"
restore
# A shard symlinked to a file outside the checkpoint (here an intact copy: it would load).
rm $SHARD && ln -s "$PWD/shard.orig" $SHARD
expect_damage_reported "symlinked shard" "$SHARD"
expect_stderr_contains "symbolic link"
restore
# A symlinked manifest (to an intact copy).
mv $S8/manifest.yaml manifest.outside && ln -s "$PWD/manifest.outside" $S8/manifest.yaml
expect_damage_reported "symlinked manifest" "$S8/manifest.yaml"
expect_stderr_contains "symbolic link"
restore
rm manifest.outside
# A step directory that is a symbolic link to an intact step directory elsewhere.
mv $S8 elsewhere_step8 && ln -s "$PWD/elsewhere_step8" $S8
expect_damage_reported "symlinked step directory" "$S8"
expect_stderr_contains "symbolic link"
restore
rm -rf elsewhere_step8
# `latest` as a symbolic link.
rm $CK/latest && ln -s "$PWD/pristine/latest" $CK/latest
run strata_t eval --checkpoint $CK
expect_exit 2 "symlinked latest: eval of the root"
expect_stderr_contains "$CK/latest"
restore

# ---- the intact checkpoint still gives the same answer ----------------------------------------------
run "$STRATA" eval --checkpoint $CK
expect_exit 0 "eval after restoring"
[[ "$(last_stdout)" == "$GOOD_VAL" ]] || fail "eval after restore: '$(last_stdout)' != '$GOOD_VAL'"

# ---- garbled `latest`: falls back to the newest committed step --------------------------------------
echo "not-a-step-dir" > $CK/latest
run "$STRATA" eval --checkpoint $CK
expect_exit 0 "eval with a garbled latest"
[[ "$(last_stdout)" == "$GOOD_VAL" ]] || fail "garbled latest: '$(last_stdout)' != '$GOOD_VAL'"
rm $CK/latest
run "$STRATA" eval --checkpoint $CK
expect_exit 0 "eval without latest"
[[ "$(last_stdout)" == "$GOOD_VAL" ]] || fail "no latest: '$(last_stdout)' != '$GOOD_VAL'"
restore

# ---- newest step without manifest (aborted save; latest names it) ------------------------------------
rm $S8/manifest.yaml
[[ "$(cat $CK/latest)" == "step_00000008" ]] || fail "latest should still name step 8 here"
run "$STRATA" eval --checkpoint $CK
expect_exit 0 "eval with the newest step uncommitted"
[[ "$(last_stdout)" == "$STEP4_VAL" ]] || fail "fallback eval: '$(last_stdout)', expected '$STEP4_VAL'"
run "$STRATA" eval --checkpoint $S8
expect_exit 2 "eval of the uncommitted step dir itself"
expect_stderr_contains "$S8"
run "$STRATA" export --checkpoint $CK --output m.safetensors
expect_exit 0 "export falls back too"
expect_stdout_contains "from step 4 to m.safetensors"

# Training with resume=auto (the same job) resumes from step 4 and redoes steps 5..8.
run "$STRATA" train "${JOB[@]}"
expect_exit 0 "train resume=auto with the newest step uncommitted"
expect_stderr_contains "resumed from $S4 at step 4"
expect_stderr_contains "step 5/8 | loss"
expect_stderr_contains "checkpoint: saved step 8 to $S8"
expect_file $S8/manifest.yaml
[[ "$(cat $CK/latest)" == "step_00000008" ]] || fail "latest is '$(cat $CK/latest)', expected step_00000008"
# The re-done step 8 is the same checkpoint as before (resume is exact).
run "$STRATA" eval --checkpoint $CK
expect_exit 0 "eval of the re-saved step 8"
[[ "$(last_stdout)" == "$GOOD_VAL" ]] || fail "re-saved step 8: '$(last_stdout)' != '$GOOD_VAL'"
cmp -s $SHARD shard.orig || fail "the re-saved step 8 shard differs from the original one"
diff <(metrics_losses run/metrics.jsonl) <(metrics_losses pristine_metrics.jsonl) >&2 ||
  fail "the losses of the redone steps 5..8 differ from the first run's"

# ... and it goes on from there when asked for more steps.
run "$STRATA" train "${JOB[@]}" --set train.steps=10
expect_exit 0 "train resume=auto, longer"
expect_stderr_contains "resumed from $S8 at step 8"
expect_stderr_contains "checkpoint: saved step 10 to $CK/step_00000010"
[[ "$(cat $CK/latest)" == "step_00000010" ]] || fail "latest is '$(cat $CK/latest)', expected step_00000010"
