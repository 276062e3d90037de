#!/usr/bin/env bash
# train.init_from / --init-from: parameters from a safetensors file by their Llama names.
#   - round trip: train -> export (f32) -> eval --init-from gives the checkpoint's val_loss
#     exactly; a bf16 export and an f16 re-write (by Python) give it within their rounding;
#   - train --init-from starts from those weights (step 1's loss is the trained model's, far below
#     ln 256) with a fresh optimizer, and a resumed checkpoint takes precedence over it;
#   - any layout (mpirun -np 2: dp=2 ZeRO-3, sp=2, pp=2, pp=2 with a vocabulary-parallel head, also
#     of 251 rows, 126 a rank with one padding row): each rank loads what it holds. Checked by value: 1 step of SGD at lr 1e-30
#     changes nothing, and the export of that checkpoint equals the file it started from;
#   - a pure-softmax untied model (layer_pattern S) loads a file with exactly the tensors of a
#     Hugging Face Llama export (written by Python, F16, with rotary_emb.inv_freq buffers);
#   - missing, extra, wrong-shape, wrong-dtype tensors and a missing file exit 2 naming them,
#     before the run directory is written.
#
# usage: bash tests/e2e/init_from.sh STRATA_BINARY [SOURCE_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
e2e_init "$@"

prepare_corpus .
SETS=("${TINY_SETS[@]}" --set model.layer_pattern=LS --set data.train=data/train
  --set data.val=data/val --set train.eval_every=0 --set train.eval_batches=3 --set log.every=1)
val_of() { sed -nE 's/^step [0-9]+ val_loss ([0-9.]+) batches [0-9]+$/\1/p' "$E2E_OUT/stdout"; }
close() { python3 -c "import sys; a, b, t = map(float, sys.argv[1:]); sys.exit(abs(a - b) > t * abs(a))" "$@"; }

run "$STRATA" train "${SETS[@]}" --set train.steps=12 --set optim.lr=1e-2 --set train.run_dir=a
expect_exit 0 "training the source model"
run "$STRATA" eval --checkpoint a/checkpoints
expect_exit 0 "eval of the checkpoint"
ref=$(val_of)
run "$STRATA" export --checkpoint a/checkpoints --output m.safetensors
expect_exit 0 "export f32"
run "$STRATA" export --checkpoint a/checkpoints --output m16.safetensors --dtype bf16
expect_exit 0 "export bf16"

# f16 and broken copies of the export, written the way any safetensors writer lays them out.
python3 - <<'PY' || fail "writing the test safetensors files"
import json, struct

def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]

def save(path, tensors, meta=None):  # tensors: name -> (dtype, shape, raw bytes)
    header, off = {}, 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for _, _, raw in tensors.values():
            f.write(raw)

header, data = load("m.safetensors")
header.pop("__metadata__")
f32 = {}
for name, t in header.items():
    a, b = t["data_offsets"]
    f32[name] = ("F32", t["shape"], data[a:b])
def to_f16(raw):
    vals = struct.unpack(f"<{len(raw) // 4}f", raw)
    return struct.pack(f"<{len(vals)}e", *vals)
save("m_f16.safetensors", {k: ("F16", s, to_f16(r)) for k, (d, s, r) in f32.items()})
missing = dict(f32); del missing["model.layers.1.mlp.up_proj.weight"]
save("missing.safetensors", missing)
extra = dict(f32); extra["model.layers.7.mlp.up_proj.weight"] = f32["model.layers.1.mlp.up_proj.weight"]
save("extra.safetensors", extra)
shape = dict(f32); d, s, r = shape["model.norm.weight"]; shape["model.norm.weight"] = (d, [2, s[0] // 2], r)
save("shape.safetensors", shape)
ints = dict(f32); d, s, r = ints["model.layers.0.input_layernorm.weight"]
ints["model.layers.0.input_layernorm.weight"] = ("I32", s, r)
save("dtype.safetensors", ints)

# A Hugging Face Llama checkpoint for the pure-softmax untied model below (D 32, 2 layers, 2
# heads, 1 kv head, ffn 64, vocab 256): its tensor names, F16, and the RoPE buffers some
# exports carry. Values: a fixed pseudo-random pattern.
D, L, H, KV, F, V = 32, 2, 2, 1, 64, 256
dh = D // H
x = 12345
def weights(shape, scale=0.02, ones=False):
    global x
    n = 1
    for s in shape:
        n *= s
    vals = []
    for _ in range(n):
        x = (x * 1103515245 + 12345) % 2**31
        vals.append(1.0 + 0.1 * (x / 2**31 - 0.5) if ones else scale * (x / 2**31 - 0.5))
    return ("F16", list(shape), struct.pack(f"<{n}e", *vals))
llama = {"model.embed_tokens.weight": weights([V, D])}
for i in range(L):
    p = f"model.layers.{i}."
    llama.update({
        p + "self_attn.q_proj.weight": weights([H * dh, D]),
        p + "self_attn.k_proj.weight": weights([KV * dh, D]),
        p + "self_attn.v_proj.weight": weights([KV * dh, D]),
        p + "self_attn.o_proj.weight": weights([D, H * dh]),
        p + "self_attn.rotary_emb.inv_freq": ("F32", [dh // 2], struct.pack(f"<{dh // 2}f", *[10000 ** (-2 * j / dh) for j in range(dh // 2)])),
        p + "mlp.gate_proj.weight": weights([F, D]),
        p + "mlp.up_proj.weight": weights([F, D]),
        p + "mlp.down_proj.weight": weights([D, F]),
        p + "input_layernorm.weight": weights([D], ones=True),
        p + "post_attention_layernorm.weight": weights([D], ones=True),
    })
llama["model.norm.weight"] = weights([D], ones=True)
llama["lm_head.weight"] = weights([V, D])
save("llama.safetensors", llama, {"format": "pt"})
PY

# ---- round trip: export -> init_from -> eval ---------------------------------------------------------
run "$STRATA" eval "${SETS[@]}" --init-from m.safetensors
expect_exit 0 "eval --init-from the f32 export"
[[ "$(val_of)" == "$ref" ]] || fail "eval --init-from m.safetensors gives $(val_of), the checkpoint $ref"
expect_stderr_contains "init_from: 22 tensors from m.safetensors"
for f in m16 m_f16; do
  run "$STRATA" eval "${SETS[@]}" --init-from $f.safetensors
  expect_exit 0 "eval --init-from $f"
  close "$(val_of)" "$ref" 2e-3 || fail "$f: val_loss $(val_of), the checkpoint's $ref"
done

# ---- train --init-from: the first step starts from the trained weights ------------------------------
run "$STRATA" train "${SETS[@]}" --set train.steps=2 --set train.run_dir=b --init-from m.safetensors
expect_exit 0 "train --init-from"
python3 - a/metrics.jsonl b/metrics.jsonl <<'PY' || fail "train --init-from did not start from the weights"
import json, sys
a, b = ([json.loads(l)["loss"] for l in open(p) if l.strip()] for p in sys.argv[1:])
assert b[0] < a[0] - 0.5, f"first loss {b[0]} is not below the untrained {a[0]}"
PY
# A resumed checkpoint wins over init_from (the file is not even read: a missing one is fine).
run "$STRATA" train "${SETS[@]}" --set train.steps=3 --set train.run_dir=b --set train.init_from=gone.safetensors
expect_exit 0 "resume with train.init_from set"
expect_stderr_contains "resumed from b/checkpoints/step_00000002"

# ---- any layout: each rank loads what it holds -----------------------------------------------------
require_mpirun
TINY_LR=(--set optim.name=sgd --set optim.lr=1e-30 --set optim.min_lr=1e-30 --set optim.weight_decay=0
  --set train.steps=1 --set train.micro_batch=1)
# A source model of 251 tokens (the corpus is ASCII) for the padded vocabulary split.
run "$STRATA" train "${SETS[@]}" --set model.vocab_size=251 --set train.steps=2 --set train.run_dir=v251
expect_exit 0 "training the 251-token source model"
run "$STRATA" export --checkpoint v251/checkpoints --output v251.safetensors
expect_exit 0 "export of the 251-token model"
for layout in "dp=2 zero_stage=3" "sp=2 zero_stage=1" "pp=2 pp_layers=[1,1]" \
              "pp=2 vocab_parallel=true" "pp=2 vocab_parallel=true V=251"; do
  sets=()
  for kv in $layout; do
    if [[ $kv == V=251 ]]; then
      sets+=(--set model.vocab_size=251)
    else
      sets+=(--set "parallel.$kv")
    fi
  done
  src=m.safetensors
  [[ $layout == *V=251 ]] && src=v251.safetensors
  name=${layout// /_}
  name=${name//[\[\],=]/_}
  if [[ $src == m.safetensors ]]; then
    run "${MPIRUN[@]}" -np 2 "$STRATA" eval "${SETS[@]}" "${sets[@]}" --init-from $src
    expect_exit 0 "mpirun -np 2 eval --init-from, $layout"
    close "$(val_of)" "$ref" 2e-5 || fail "$layout: val_loss $(val_of), the checkpoint's $ref"
  fi
  run "${MPIRUN[@]}" -np 2 "$STRATA" train "${SETS[@]}" "${sets[@]}" "${TINY_LR[@]}" \
    --set train.run_dir=$name --init-from $src
  expect_exit 0 "mpirun -np 2 train --init-from, $layout"
  run "$STRATA" export --checkpoint $name/checkpoints --output $name.safetensors
  expect_exit 0 "export of the $layout run"
  python3 - $src $name.safetensors <<'PY' || fail "$layout: the loaded weights differ from the file"
import json, struct, sys
def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    d = b[8 + n:]
    return {k: struct.unpack(f"<{(v['data_offsets'][1] - v['data_offsets'][0]) // 4}f",
                             d[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in h.items()}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
assert a.keys() == b.keys(), a.keys() ^ b.keys()
for k in a:
    worst = max(abs(x - y) for x, y in zip(a[k], b[k]))
    assert worst <= 1e-12, f"{k}: differs by {worst}"
PY
done

# ---- a Hugging Face Llama file into a pure-softmax untied model -------------------------------------
run "$STRATA" train "${SETS[@]}" --set model.layer_pattern=S "${TINY_LR[@]}" --set train.run_dir=llama \
  --init-from llama.safetensors
expect_exit 0 "layer_pattern S from a Llama file"
run "$STRATA" export --checkpoint llama/checkpoints --output llama_back.safetensors
expect_exit 0 "export of the Llama-initialised run"
python3 - llama.safetensors llama_back.safetensors <<'PY' || fail "the Llama tensors did not load as written"
import json, struct, sys
def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    d = b[8 + n:]
    out = {}
    for k, v in h.items():
        raw = d[v["data_offsets"][0]:v["data_offsets"][1]]
        fmt = {"F16": "e", "F32": "f"}[v["dtype"]]
        out[k] = struct.unpack(f"<{len(raw) // struct.calcsize(fmt)}{fmt}", raw)
    return out
src, back = tensors(sys.argv[1]), tensors(sys.argv[2])
src = {k: v for k, v in src.items() if not k.endswith("rotary_emb.inv_freq")}
assert src.keys() == back.keys(), src.keys() ^ back.keys()
for k in src:
    assert all(abs(x - y) <= 1e-12 for x, y in zip(src[k], back[k])), k  # f16 -> f32 is exact
PY

# ---- bad files: exit 2 naming the tensor, nothing written ---------------------------------------
rejected() {
  local file=$1
  shift
  run "$STRATA" train "${SETS[@]}" --set train.steps=1 --set train.run_dir=bad --init-from "$file"
  expect_exit 2 "init_from $file"
  for needle in "$@"; do expect_stderr_contains "$needle" "init_from $file"; done
  expect_absent bad
}
rejected missing.safetensors "missing.safetensors: the model's tensor 'model.layers.1.mlp.up_proj.weight' [64, 32] is missing"
rejected extra.safetensors "tensor 'model.layers.7.mlp.up_proj.weight' is not a parameter of the model"
rejected shape.safetensors "tensor 'model.norm.weight' has shape [2, 16] (F32) but the model's is [32]"
rejected dtype.safetensors "tensor 'model.layers.0.input_layernorm.weight': unknown dtype 'I32'"
rejected gone.safetensors "gone.safetensors: cannot open"
run "$STRATA" train "${SETS[@]}" --set model.n_layers=3 --set train.run_dir=bad --init-from m.safetensors
expect_exit 2 "a model with another n_layers"
expect_stderr_contains "tensor 'model.layers.2."
run "$STRATA" eval "${SETS[@]}" --init-from m.safetensors --checkpoint a/checkpoints
expect_exit 2 "eval with both --init-from and --checkpoint"
expect_stderr_contains "exclude each other"
