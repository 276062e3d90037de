#!/usr/bin/env bash
# Token files written by other tools train exactly as Strata's own shards: an independent Python
# writer (below, from the formats' documentation: llm.c's dev/data/data_common.py and Megatron-LM's
# megatron/core/datasets/indexed_dataset.py) re-writes prepare-data's token stream as
#   - llm.c Llama-3 shards (magic 20240801, version 7, uint32 tokens), and
#   - Megatron-LM indexed datasets (.bin + MMIDIDX .idx; one sequence per document; uint16 and
#     int32 tokens),
# and a training run on each gives the same losses, step for step, as on the original shards.
# prepare-data --version 7 writes the Llama-3 layout as llm.c reads it. A malformed .idx (bad
# magic, version, sizes that disagree with the .bin) exits 2 naming the file and the field.
#
# usage: bash tests/e2e/token_formats.sh STRATA_BINARY [SOURCE_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
e2e_init "$@"

prepare_corpus .

python3 - <<'PY' || fail "the Python writer of llm.c and Megatron files"
import os, struct

def read_llmc(path):
    b = open(path, "rb").read()
    magic, version, n = struct.unpack("<3i", b[:12])
    assert (magic, version) in ((20240520, 1), (20240801, 7)), (path, magic, version)
    fmt = "H" if version == 1 else "I"
    return list(struct.unpack(f"<{n}{fmt}", b[1024:]))

def write_llama3(path, toks):  # data_common.py's write_datafile(model_desc="llama-3")
    header = [20240801, 7, len(toks)] + [0] * 253
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(struct.pack(f"<{len(toks)}I", *toks))

DTYPES = {8: "H", 4: "i"}  # Megatron's DType codes: uint16 = 8, int32 = 4

def write_megatron(prefix, docs, code):  # indexed_dataset.py's _IndexWriter
    fmt, size = DTYPES[code], struct.calcsize(DTYPES[code])
    lengths, pointers, doc_index, ptr = [], [], [0], 0
    with open(prefix + ".bin", "wb") as f:
        for d in docs:
            f.write(struct.pack(f"<{len(d)}{fmt}", *d))
            lengths.append(len(d))
            pointers.append(ptr)
            ptr += len(d) * size
            doc_index.append(len(lengths))
    with open(prefix + ".idx", "wb") as f:
        f.write(b"MMIDIDX\x00\x00")
        f.write(struct.pack("<Q", 1))
        f.write(struct.pack("<B", code))
        f.write(struct.pack("<Q", len(lengths)))
        f.write(struct.pack("<Q", len(doc_index)))
        f.write(struct.pack(f"<{len(lengths)}i", *lengths))
        f.write(struct.pack(f"<{len(pointers)}q", *pointers))
        f.write(struct.pack(f"<{len(doc_index)}q", *doc_index))

def documents(toks):  # every document starts with the separator 0
    docs = []
    for t in toks:
        if t == 0 or not docs:
            docs.append([])
        docs[-1].append(t)
    return docs

for d in ("l3", "mg16", "mg32"):
    os.makedirs(d, exist_ok=True)
for split in ("train", "val"):
    toks = read_llmc(f"data/{split}_000000.bin")
    assert not os.path.exists(f"data/{split}_000001.bin")
    write_llama3(f"l3/{split}_000000.bin", toks)
    docs = documents(toks)
    assert len(docs) >= 3 and sum(map(len, docs)) == len(toks)
    write_megatron(f"mg16/{split}_text_document", docs, 8)
    write_megatron(f"mg32/{split}_text_document", docs, 4)
PY

JOB=("${TINY_SETS[@]}" --set train.steps=6 --set optim.warmup_steps=2 --set train.eval_every=3
  --set train.eval_batches=2 --set log.every=1 --set checkpoint.every=0)
run "$STRATA" train "${JOB[@]}" --set data.train=data/train --set data.val=data/val \
  --set train.run_dir=run_ref
expect_exit 0 "training on prepare-data's shards"

for layout in "l3 l3/train l3/val" "mg16 mg16/train_text_document mg16/val_text_document.idx" \
              "mg32 mg32/train_text_document.bin mg32"; do
  read -r name train val <<<"$layout"
  [[ $name == mg32 ]] && val=mg32/val_text_document  # a directory would hold train and val
  run "$STRATA" train "${JOB[@]}" --set data.train="$train" --set data.val="$val" \
    --set train.run_dir=run_$name
  expect_exit 0 "training on $name ($train)"
  diff <(metrics_losses run_ref/metrics.jsonl) <(metrics_losses run_$name/metrics.jsonl) >&2 ||
    fail "$name: the losses differ from those on prepare-data's shards"
  python3 - run_ref/metrics.jsonl run_$name/metrics.jsonl <<'PY' || fail "$name: val_loss differs"
import json, sys
val = [[r["val_loss"] for r in map(json.loads, open(p)) if "val_loss" in r] for p in sys.argv[1:]]
assert val[0] == val[1] and len(val[0]) == 2, val
PY
done

# A Megatron directory: its .bin files are found, the .idx files beside them are used.
run "$STRATA" train "${JOB[@]}" --set data.train=mg16 --set data.val= --set train.eval_every=0 \
  --set train.steps=1 --set train.run_dir=run_dir
expect_exit 0 "training on a directory of Megatron datasets"

# ---- prepare-data --version 7: llm.c's Llama-3 layout ------------------------------------------
run "$STRATA" prepare-data --input corpus --output data7 --version 7
expect_exit 0 "prepare-data --version 7"
expect_stdout_contains "shard version 7"
python3 - data/train_000000.bin data7/train_000000.bin <<'PY' || fail "version 7 shard layout"
import struct, sys
a, b = (open(p, "rb").read() for p in sys.argv[1:])
ha, hb = struct.unpack("<256i", a[:1024]), struct.unpack("<256i", b[:1024])
assert hb[:3] == (20240801, 7, ha[2]) and not any(hb[3:]), hb[:4]   # llm.c's llama-3 header
ta = struct.unpack(f"<{ha[2]}H", a[1024:])
tb = struct.unpack(f"<{hb[2]}I", b[1024:])
assert ta == tb and len(b) == 1024 + 4 * hb[2]
PY

# ---- malformed Megatron indices: exit 2, the file and the field named --------------------------
mkdir bad
bad_idx() {  # bad_idx NAME PYTHON_EXPR_ON_idx_bytearray [BIN_PYTHON_EXPR]
  cp mg16/train_text_document.bin "bad/$1.bin"
  python3 - mg16/train_text_document.idx "bad/$1.idx" "bad/$1.bin" "$2" "${3:-}" <<'PY'
import struct, sys
idx = bytearray(open(sys.argv[1], "rb").read())
binary = bytearray(open(sys.argv[3], "rb").read())
exec(sys.argv[4])
if sys.argv[5]:
    exec(sys.argv[5])
open(sys.argv[2], "wb").write(idx)
open(sys.argv[3], "wb").write(binary)
PY
  expect_rejected_data "$1" "${@:4}"
}
expect_rejected_data() {
  local name=$1
  shift
  run "$STRATA" train "${JOB[@]}" --set data.train="bad/$name" --set data.val= \
    --set train.run_dir=run_bad
  expect_exit 2 "malformed Megatron dataset bad/$name"
  expect_absent run_bad
  for needle in "$@"; do expect_stderr_contains "$needle" "bad/$name"; done
}
bad_idx magic 'idx[0:7] = b"NOTMMAP"' "" "bad/magic.idx: bad magic"
bad_idx version 'idx[9:17] = struct.pack("<Q", 3)' "" "bad/version.idx: Megatron index field version: 3, expected 1"
bad_idx dtype 'idx[17] = 6' "" "bad/dtype.idx" "field dtype: code 6"
bad_idx lengths 'idx[34:38] = struct.pack("<i", struct.unpack("<i", idx[34:38])[0] + 1)' "" \
  "bad/lengths.idx" "sequence_pointers[1]"
bad_idx short '' 'binary[:] = binary[:-2]' "bad/short.bin: truncated" "bad/short.idx add up to"
bad_idx cut 'idx[:] = idx[:-3]' "" "bad/cut.idx: truncated"
