#!/usr/bin/env bash
# strata train under mpirun as a user runs it: data parallelism with ZeRO gives the losses of one
# process, every rank writes its own checkpoint shard, the checkpoint resumes under another rank
# count, a layout that does not match the processes is refused before any work, and the shipped
# pipeline job (configs/pp4_1f1b.yaml) trains on 4 processes.
set -euo pipefail
source "$(dirname "$0")/lib.bash"
e2e_init "$@"

require_mpirun
prepare_corpus .
SETS=("${TINY_SETS[@]}" --set data.train=data/train --set data.val=data/val
      --set train.global_batch=4 --set train.micro_batch=1 --set train.steps=8 --set train.threads=1
      --set train.eval_every=4 --set checkpoint.every=4 --set log.every=1)

run "$STRATA" train "${SETS[@]}" --set train.run_dir=one
expect_exit 0 "one process"

for stage in 1 3; do
  run "${MPIRUN[@]}" -np 2 "$STRATA" train "${SETS[@]}" --set parallel.dp=2 \
    --set parallel.zero_stage=$stage --set train.run_dir=two$stage
  expect_exit 0 "mpirun -np 2, ZeRO-$stage"
  expect_file two$stage/checkpoints/step_00000008/shard_r00000.bin
  expect_file two$stage/checkpoints/step_00000008/shard_r00001.bin
  # Same losses as one process within fp32 tolerance (sums over ranks round differently).
  /usr/bin/env python3 - one/metrics.jsonl two$stage/metrics.jsonl <<'PY' || fail "ZeRO-$stage losses differ from one process"
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

# Resume the 2-rank ZeRO-3 checkpoint of step 4 in one process: steps 5-8 as before.
rm -rf two3/checkpoints/step_00000008 && echo step_00000004 > two3/checkpoints/latest
run "$STRATA" train "${SETS[@]}" --set train.run_dir=resumed --set checkpoint.dir=two3/checkpoints
expect_exit 0 "one process resuming a 2-rank ZeRO-3 checkpoint"
expect_stderr_contains "written by 2 ranks" "resume names the writer's rank count"
/usr/bin/env python3 - one/metrics.jsonl resumed/metrics.jsonl <<'PY' || fail "resumed losses differ"
import json, sys
a = {d["step"]: d["loss"] for d in map(json.loads, open(sys.argv[1]))}
b = {d["step"]: d["loss"] for d in map(json.loads, open(sys.argv[2]))}
assert sorted(b) == [5, 6, 7, 8], sorted(b)
for s in b:
    assert abs(a[s] - b[s]) <= 2e-5 * abs(a[s]), (s, a[s], b[s])
PY

# A layout that does not match the processes: exit 2 naming it, nothing written.
BEFORE=$(tree_snapshot)
run "${MPIRUN[@]}" -np 2 "$STRATA" train "${SETS[@]}" --set parallel.dp=3 --set train.global_batch=3 \
  --set train.run_dir=bad
[[ $E2E_RC -ne 0 ]] || fail "dp=3 on 2 processes was accepted"
expect_stderr_contains "parallel: pp*dp*sp = 3" "the mismatch is named"
[[ "$(tree_snapshot)" == "$BEFORE" ]] || fail "a refused layout wrote files"

# The shipped pipeline job: configs/pp4_1f1b.yaml on 4 processes (a few small steps of it), and
# its plan printed without training.
run "$STRATA" schedule "$SRC_DIR/configs/pp4_1f1b.yaml"
expect_exit 0 "strata schedule configs/pp4_1f1b.yaml"
grep -q "schedule 1f1b" "$E2E_OUT/stdout" || fail "the plan does not name its schedule"
run "${MPIRUN[@]}" -np 4 "$STRATA" train "$SRC_DIR/configs/pp4_1f1b.yaml" --set data.train=data/train \
  --set data.val=data/val --set train.steps=2 --set train.eval_every=0 --set train.eval_batches=1 \
  --set data.seq_len=32 --set train.threads=1 --set train.run_dir=pp4 --set checkpoint.every=2
expect_exit 0 "mpirun -np 4 strata train configs/pp4_1f1b.yaml"
for r in 0 1 2 3; do expect_file pp4/checkpoints/step_00000002/shard_r0000$r.bin; done
expect_stderr_matches "step 2/2 \| loss [0-9.]+" "the pipeline job logs its steps"
