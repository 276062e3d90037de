#!/usr/bin/env bash
# SentencePiece through prepare-data (libsentencepiece, not a re-implementation):
#   - --train-tokenizer --vocab-size N trains a BPE (or unigram) model on the text, stores it as
#     DIR/tokenizer.model with DIR/tokenizer.yaml, and encodes the shards with it: the ids are
#     those of SentencePiece's own spm_encode, line by line, with <0x0A> between the lines;
#   - --tokenizer spm:MODEL encodes with a given model to the same shards;
#   - a model trains on them with model.vocab_size = N, its first loss about ln(N), falling;
#     another vocab_size is refused (exit 2) naming both sizes;
#   - bad tokenizer flags and model files exit 2 and write nothing.
#
# usage: bash tests/e2e/tokenizers.sh STRATA_BINARY [SOURCE_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
e2e_init "$@"

make_corpus corpus
V=512
run "$STRATA" prepare-data --input corpus --output spm --train-tokenizer --vocab-size $V --val-fraction 0
expect_exit 0 "prepare-data --train-tokenizer"
expect_stdout_contains "(sentencepiece tokenizer, vocab $V, shard version 1)"
expect_stderr_contains "prepare-data: training a bpe tokenizer of $V pieces"
expect_file spm/tokenizer.model
expect_file spm/tokenizer.yaml
grep -qx "kind: sentencepiece" spm/tokenizer.yaml || fail "tokenizer.yaml: kind"
grep -qx "vocab_size: $V" spm/tokenizer.yaml || fail "tokenizer.yaml: vocab_size"
grep -qx "separator: 1" spm/tokenizer.yaml || fail "tokenizer.yaml: separator"

# The shard's ids against spm_encode's (the sentencepiece package's command-line encoder).
if command -v spm_encode >/dev/null; then
  first=$(find corpus -type f | LC_ALL=C sort | head -1)
  spm_encode --model=spm/tokenizer.model --output_format=id <"$first" >first.ids
  python3 - spm/train_000000.bin first.ids <<'PY' || fail "the shard's ids differ from spm_encode's"
import struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<i", b[8:12])[0]
toks = struct.unpack(f"<{n}H", b[1024:])
assert toks[0] == 1, "the first document does not start with <s>"
doc = list(toks[1:toks.index(1, 1)])  # up to the second document's <s>
NEWLINE = 3 + 0x0A  # byte pieces <0x00>..<0xFF> follow <unk>, <s>, </s>
lines, cur = [], []
for t in doc:
    if t == NEWLINE:
        lines.append(cur)
        cur = []
    else:
        cur.append(t)
if cur:
    lines.append(cur)
want = [[int(x) for x in l.split()] for l in open(sys.argv[2])]
assert len(lines) == len(want), (len(lines), len(want))
bad = [i for i, (a, w) in enumerate(zip(lines, want)) if a != w]
assert not bad, f"line {bad[0]}: {lines[bad[0]]} != spm_encode {want[bad[0]]}"
print(f"{len(want)} lines agree with spm_encode")
PY
else
  echo "spm_encode not installed (Debian package sentencepiece): its cross-check skipped"
fi

# A given model encodes to the same shards.
run "$STRATA" prepare-data --input corpus --output given --tokenizer spm:spm/tokenizer.model --val-fraction 0 --quiet
expect_exit 0 "prepare-data --tokenizer spm:"
cmp -s spm/train_000000.bin given/train_000000.bin || fail "--tokenizer spm: gave other shards"
[[ ! -s "$E2E_OUT/stderr" ]] || fail "--quiet printed on stderr"

run "$STRATA" prepare-data --input corpus --output uni --train-tokenizer --vocab-size 400 --tokenizer-type unigram
expect_exit 0 "prepare-data --tokenizer-type unigram"
expect_stdout_contains "vocab 400"

# ---- training on the SentencePiece shards ---------------------------------------------------------
JOB=("${TINY_SETS[@]}" --set data.train=spm/train --set data.val= --set train.eval_every=0
  --set train.steps=20 --set optim.lr=1e-2 --set optim.warmup_steps=2 --set log.every=1)
run "$STRATA" train "${JOB[@]}" --set model.vocab_size=$V --set train.run_dir=run
expect_exit 0 "training with the SentencePiece vocabulary"
python3 - run/metrics.jsonl $V <<'PY' || fail "loss with the SentencePiece vocabulary"
import json, math, sys
losses = [json.loads(l)["loss"] for l in open(sys.argv[1]) if l.strip()]
v = int(sys.argv[2])
assert abs(losses[0] - math.log(v)) < 0.5, f"first loss {losses[0]}, expected about ln({v})"
assert losses[-1] < losses[0] - 0.5, f"loss did not fall: {losses[0]} -> {losses[-1]}"
PY

run "$STRATA" train "${JOB[@]}" --set train.run_dir=run_wrong
expect_exit 2 "model.vocab_size 256 on SentencePiece shards of $V"
expect_stderr_contains "model.vocab_size is 256"
expect_stderr_contains "spm/tokenizer.yaml, tokenizer.model) has vocab_size $V"
expect_absent run_wrong

# ---- bad tokenizer input: exit 2, nothing written ----------------------------------------------
rejected() {
  local what=$1 needle=$2
  shift 2
  run "$STRATA" prepare-data --input corpus --output out "$@"
  expect_exit 2 "$what"
  expect_stderr_contains "$needle" "$what"
  expect_absent out
}
echo "not a model" >junk.model
rejected "a file that is not a SentencePiece model" "junk.model: not a SentencePiece model" --tokenizer spm:junk.model
rejected "a missing model file" "missing.model" --tokenizer spm:missing.model
rejected "an unknown tokenizer" "expected 'byte' or 'spm:MODEL_FILE', got 'gpt2'" --tokenizer gpt2
rejected "--train-tokenizer without --vocab-size" "--train-tokenizer needs --vocab-size" --train-tokenizer
rejected "--vocab-size without --train-tokenizer" "go with --train-tokenizer" --vocab-size 300
rejected "--vocab-size too small" "--vocab-size 100 is out of range" --train-tokenizer --vocab-size 100
rejected "a vocabulary the text cannot fill" "--vocab-size 200000" --train-tokenizer --vocab-size 200000
rejected "--tokenizer-type wordpiece" "--tokenizer-type: expected bpe or unigram" --train-tokenizer --vocab-size 300 --tokenizer-type wordpiece
rejected "--version 2 (read, not written)" "--version: expected 1" --version 2

# ---- the shipped example: configs/fortunes_spm.yaml, as its comment says to run it -------------
FORTUNES=${STRATA_E2E_FORTUNES:-/usr/share/games/fortunes}
if [[ -d $FORTUNES ]]; then
  CFG="$SRC_DIR/configs/fortunes_spm.yaml"
  vocab=$(sed -nE 's/^  vocab_size: ([0-9]+).*/\1/p' "$CFG")
  run "$STRATA" prepare-data --input "$FORTUNES" --output data/fortunes_spm --train-tokenizer --vocab-size "$vocab" --quiet
  expect_exit 0 "the example's prepare-data"
  run "$STRATA" train "$CFG" --set train.steps=2 --set train.eval_every=0 --set checkpoint.every=0 \
    --set train.run_dir=example --set train.threads=2
  expect_exit 0 "train configs/fortunes_spm.yaml"
  expect_stderr_contains "step 2/2 | loss"
else
  echo "no fortunes corpus at $FORTUNES: the configs/fortunes_spm.yaml check skipped"
fi
