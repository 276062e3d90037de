#!/usr/bin/env bash
# Eval and export read a checkpoint written under any layout: a checkpoint trained by
# `mpirun -np 2` with parallel.dp=2 (and one with parallel.sp=2) evaluates in one process, with
# a log line saying which layout it used (a pipeline checkpoint's schedule and stage split are
# dropped with its layout), to the val_loss the training run logged, and the same
# as eval under mpirun -np 2; export of it works in one process; a vocabulary-parallel one exports
# the unpadded tensors.
#
# usage: bash tests/e2e/eval_any_layout.sh STRATA_BINARY [SOURCE_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
e2e_init "$@"

require_mpirun
prepare_corpus .
SETS=("${TINY_SETS[@]}" --set data.train=data/train --set data.val=data/val
  --set train.global_batch=4 --set train.micro_batch=1 --set train.steps=4 --set train.threads=1
  --set train.eval_every=0 --set train.eval_batches=3 --set checkpoint.every=4 --set log.every=1)

# close A B: val losses equal within fp32 tolerance (sums over ranks round differently).
close() { python3 -c "import sys; a, b = map(float, sys.argv[1:]); sys.exit(abs(a - b) > 2e-5 * abs(a))" "$1" "$2"; }
val_of() { sed -nE 's/^step [0-9]+ val_loss ([0-9.]+) batches [0-9]+$/\1/p' "$E2E_OUT/stdout"; }

for layout in "dp=2 zero_stage=3" "sp=2 zero_stage=1" "pp=2 schedule=zb-h1 pp_layers=[1,1]"; do
  sets=()
  for kv in $layout; do sets+=(--set "parallel.$kv"); done
  name=${layout// /_}
  run "${MPIRUN[@]}" -np 2 "$STRATA" train "${SETS[@]}" "${sets[@]}" --set train.run_dir=$name
  expect_exit 0 "mpirun -np 2 training with $layout"
  CK=$name/checkpoints/step_00000004
  expect_file $CK/shard_r00001.bin
  logged=$(python3 -c "import json, sys; print([d for d in map(json.loads, open(sys.argv[1])) if 'val_loss' in d][-1]['val_loss'])" $name/metrics.jsonl)

  run "$STRATA" eval --checkpoint $CK
  expect_exit 0 "eval in one process of the $layout checkpoint"
  expect_stderr_contains "does not fit 1 process: reading it as dp=1 sp=1 pp=1" "$layout: the layout is logged"
  one=$(val_of)
  [[ -n "$one" ]] || fail "$layout: no val_loss line"
  close "$one" "$logged" || fail "$layout: eval in one process gives $one, training logged $logged"

  run "${MPIRUN[@]}" -np 2 "$STRATA" eval --checkpoint $CK
  expect_exit 0 "eval under mpirun -np 2 of the $layout checkpoint"
  [[ $(grep -c val_loss "$E2E_OUT/stdout") -eq 1 ]] || fail "$layout: expected one val_loss line"
  two=$(val_of)
  close "$one" "$two" || fail "$layout: eval in one process gives $one, under -np 2 $two"

  run "$STRATA" export --checkpoint $CK --output $name.safetensors
  expect_exit 0 "export in one process of the $layout checkpoint"
  expect_file $name.safetensors
done

# A vocabulary-parallel checkpoint (pp=2, a 251-row vocabulary: 126 rows a rank, the last one
# padding) evaluates in one process to the logged val_loss and exports the unpadded [251, D]
# weights.
run "${MPIRUN[@]}" -np 2 "$STRATA" train "${SETS[@]}" --set parallel.pp=2 \
  --set parallel.vocab_parallel=true --set model.vocab_size=251 --set train.run_dir=vocab
expect_exit 0 "mpirun -np 2 training with vocab_parallel"
logged=$(python3 -c "import json, sys; print([d for d in map(json.loads, open(sys.argv[1])) if 'val_loss' in d][-1]['val_loss'])" vocab/metrics.jsonl)
run "$STRATA" eval --checkpoint vocab/checkpoints/step_00000004
expect_exit 0 "eval in one process of the vocab_parallel checkpoint"
one=$(val_of)
close "$one" "$logged" || fail "vocab_parallel: eval in one process gives $one, training logged $logged"
run "$STRATA" export --checkpoint vocab/checkpoints/step_00000004 --output vocab.safetensors
expect_exit 0 "export of the vocab_parallel checkpoint"
python3 - vocab.safetensors <<'PY' || fail "the exported vocabulary tensors are not [251, 32]"
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n])
for name in ("model.embed_tokens.weight", "lm_head.weight"):
    assert h[name]["shape"] == [251, 32], (name, h[name]["shape"])
PY
