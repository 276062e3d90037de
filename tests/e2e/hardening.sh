#!/usr/bin/env bash
# Issue 9's reproductions, each as the user met it: absurd sizes exit 2 naming the key (they
# crashed with a signal or ended in std::bad_alloc), bad output paths are refused before step 1
# (they failed at the first save, or metrics were silently not written), and a non-finite
# gradient norm never reaches the parameters or a checkpoint (a NaN checkpoint was saved and
# `latest` pointed at it).
#
# usage: bash tests/e2e/hardening.sh STRATA_BINARY [SOURCE_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
e2e_init "$@"

prepare_corpus .
JOB=("${TINY_SETS[@]}" --set data.train=data/train --set data.val=data/val --set train.steps=2
     --set train.eval_batches=1 --set train.run_dir=runs/h)

# refused WHAT TEXT ARGS...: exit 2, TEXT in the message, no checkpoint and no metrics written.
refused() {
  local what=$1 text=$2
  shift 2
  run timeout 60 "$STRATA" train "${JOB[@]}" "$@"
  expect_exit 2 "$what"
  expect_stderr_contains "$text" "$what"
  if grep -q '| loss' "$E2E_OUT/stderr"; then fail "$what: a step ran before the refusal"; fi
  [[ -z "$(find . -name manifest.yaml -o -name 'metrics.jsonl' -size +0)" ]] ||
    fail "$what: something was written"
}

# ---- sizes and counts ------------------------------------------------------------------------
refused "ffn_dim 2^63-1" "model.ffn_dim=9223372036854775807: expected a value in [1, 16777216]" \
  --set model.ffn_dim=9223372036854775807
refused "vocab_size 2^63-1" "expected a value in [2, 2147483647]" --set model.vocab_size=9223372036854775807
refused "threads 100000" "train.threads=100000: expected a value in [0, 1024], got 100000" \
  --set train.threads=100000
refused "dp 2^63-1" "expected a value in [1, 1048576], got 9223372036854775807" \
  --set parallel.dp=9223372036854775807
refused "pp 2^31" "expected a value in [1, 1048576], got 2147483648" --set parallel.pp=2147483648
refused "micro_batch 10^8" "reduce train.micro_batch (100000000) x data.seq_len" \
  --set train.micro_batch=100000000 --set train.global_batch=100000000
refused "model past the machine" "reduce the model size (model.vocab_size, model.dim" \
  --set model.dim=65536 --set model.n_heads=64 --set model.n_kv_heads=64 --set model.n_layers=64
# A chunk far past the sequence is the sequence: it trains (it terminated the process before).
run timeout 120 "$STRATA" train "${JOB[@]}" --set model.linear_attention.chunk_size=60000 \
  --set train.run_dir=runs/chunk
expect_exit 0 "chunk_size 60000"
rm -rf runs/chunk

# ---- output paths, before step 1 -------------------------------------------------------------
mkdir -p adir
refused "metrics_file is a directory" "log.metrics_file: 'adir' is a directory" \
  --set log.metrics_file=adir
refused "metrics_file in a missing directory" "log.metrics_file: the directory of 'nowhere/m.jsonl' does not exist" \
  --set log.metrics_file=nowhere/m.jsonl
touch afile
refused "checkpoint root is a file" "afile: is not a directory (expected a checkpoint root)" \
  --set checkpoint.dir=afile
refused "run_dir is a file" "train.run_dir: cannot use 'afile/x' as a directory" \
  --set train.run_dir=afile/x --set checkpoint.dir=ck
rm -rf ck
refused "run_dir with invalid UTF-8" $'train.run_dir=runs/\xff: expected UTF-8 text, got the invalid byte 0xff at byte 5' \
  --set $'train.run_dir=runs/\xff'
refused "NUL byte in a path" "expected text without NUL bytes, got one at byte 7" \
  --set 'data.train="data/tr\0ain"'

# ---- a non-finite gradient norm ----------------------------------------------------------------
BLOWUP=(--set optim.lr=1000 --set optim.grad_clip=0 --set optim.warmup_steps=0
        --set checkpoint.every=1 --set checkpoint.keep_last=0 --set train.steps=12 --set train.eval_every=0)
run timeout 120 "$STRATA" train "${JOB[@]}" "${BLOWUP[@]}" --set train.run_dir=nan
expect_exit 1 "non-finite gradient norm, on_nonfinite stop"
expect_stderr_matches 'step ([0-9]+): the (global gradient norm|loss) is not finite .*the update was not applied and nothing was saved'
bad=$(sed -nE 's/.*step ([0-9]+): the (global gradient norm|loss) is not finite.*/\1/p' "$E2E_OUT/stderr" | head -1)
expect_absent "nan/checkpoints/$(printf 'step_%08d' "$bad")"
latest=$(cat nan/checkpoints/latest)
[[ $latest == $(printf 'step_%08d' $((bad - 1))) ]] || fail "latest is $latest, expected step $((bad - 1))"
python3 - nan/metrics.jsonl <<'PY' || fail "metrics.jsonl is not JSON or holds a non-finite value"
import json, math, sys
for line in open(sys.argv[1]):
    rec = json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    for v in rec.values():
        assert not (isinstance(v, float) and not math.isfinite(v)), rec
PY
kind=$(sed -nE 's/.*step [0-9]+: the (global gradient norm|loss) is not finite.*/\1/p' "$E2E_OUT/stderr" | head -1)
run "$STRATA" eval --checkpoint nan/checkpoints --batches 1
# The weights saved before the blow-up are finite (checked below). Where the blow-up first showed
# in the loss, they are the very weights that gave it: eval may then refuse them, as it refuses
# any non-finite loss, but never prints one. Which of the two a run meets depends on its bits.
if [[ $E2E_RC -eq 0 ]]; then
  expect_stdout_matches "^step $((bad - 1)) val_loss [0-9]"
else
  [[ $kind == loss ]] || fail "eval of the last checkpoint before a gradient-norm blow-up failed"
  expect_exit 1 "eval of weights whose training loss was not finite"
  expect_stderr_contains "is not finite"
fi
run "$STRATA" export --checkpoint "nan/checkpoints/$latest" --output last.safetensors
expect_exit 0 "export the last checkpoint before the blow-up"
python3 - last.safetensors <<'PY' || fail "the last checkpoint before the blow-up holds a non-finite weight"
import json, math, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
for k, v in h.items():
    lo, hi = v["data_offsets"]
    raw = b[8 + n + lo:8 + n + hi]
    if v["dtype"] == "BF16":  # the top half of an fp32
        vals = [struct.unpack("<f", b"\0\0" + raw[i:i + 2])[0] for i in range(0, len(raw), 2)]
    else:
        assert v["dtype"] == "F32", (k, v["dtype"])
        vals = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert all(math.isfinite(x) for x in vals), k
PY
# skip: the update is dropped on every step whose norm is not finite; max_skipped in a row stops.
run timeout 120 "$STRATA" train "${JOB[@]}" "${BLOWUP[@]}" --set train.run_dir=skip \
  --set train.on_nonfinite=skip --set train.max_skipped=2
expect_exit 1 "skip until max_skipped"
expect_stderr_contains "update skipped on every rank (1 in a row, 1 in all)"
expect_stderr_contains "2 steps in a row were skipped (train.max_skipped = 2); stopping"
grep -q '"skipped":true,*' skip/metrics.jsonl || fail "metrics.jsonl does not mark the skipped step"
# The skipped step's checkpoint holds the parameters of the step before it, bit for bit.
first_skip=$(python3 -c 'import json,sys; print(min(json.loads(l)["step"] for l in open(sys.argv[1]) if json.loads(l).get("skipped")))' skip/metrics.jsonl)
run "$STRATA" export --checkpoint "skip/checkpoints/$(printf 'step_%08d' "$first_skip")" --output a.safetensors
expect_exit 0 "export the skipped step"
run "$STRATA" export --checkpoint "skip/checkpoints/$(printf 'step_%08d' $((first_skip - 1)))" --output b.safetensors
expect_exit 0 "export the step before"
python3 - a.safetensors b.safetensors <<'PY' || fail "a skipped step changed the parameters"
import json, struct, sys
def tensors(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]] for k, v in h.items()}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
assert a == b
PY

# ---- a checkpoint whose weights are NaN (checksums valid): eval fails instead of printing nan --
cp -r "nan/checkpoints/$latest" poison
python3 - poison <<'PY' || fail "could not write the NaN checkpoint"
import re, struct, sys
d = sys.argv[1]
table = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    table.append(c)
def crc32c(b):  # CRC-32C as core/crc32c.h computes it (seed 0)
    c = 0xFFFFFFFF
    for x in b:
        c = table[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF
index = open(f"{d}/shard_r00000.index.yaml").read()
m = re.search(r"- name: model.norm.weight\n(?:    .*\n)*?    numel: (\d+)\n    offset: (\d+)\n    crc32c: (\d+)", index)
numel, offset, old_entry = int(m.group(1)), int(m.group(2)), m.group(3)
data = bytearray(open(f"{d}/shard_r00000.bin", "rb").read())
data[offset:offset + 4 * numel] = struct.pack("<f", float("nan")) * numel
open(f"{d}/shard_r00000.bin", "wb").write(data)
old_file = re.search(r"^crc32c: (\d+)", index, re.M).group(1)
new_entry, new_file = str(crc32c(data[offset:offset + 4 * numel])), str(crc32c(data))
for name in ("shard_r00000.index.yaml", "manifest.yaml"):
    text = open(f"{d}/{name}").read().replace(old_entry, new_entry).replace(old_file, new_file)
    open(f"{d}/{name}", "w").write(text)
PY
run "$STRATA" eval --checkpoint poison --batches 1
expect_exit 1 "eval of a checkpoint whose loss is not finite"
expect_stderr_contains "strata eval: the validation loss of poison is not finite"
