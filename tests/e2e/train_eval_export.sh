#!/usr/bin/env bash
# The main user path: prepare-data -> train -> eval -> export, checking what each leaves behind:
#   - the loss falls (last logged loss clearly below the first);
#   - <run_dir>/config.yaml is the resolved job and re-parses (train --print-config);
#   - a committed checkpoint (manifest.yaml, `latest`) exists; eval prints a finite val_loss;
#   - export writes safetensors (f32 and bf16) with every docs/MODEL.md tensor name, the right
#     dtype, shape and byte layout, bf16 = round-to-nearest-even of the f32 export, and the model
#     config as JSON in __metadata__.strata_config;
#   - determinism: the same job run twice from scratch gives identical losses.
#
# usage: bash tests/e2e/train_eval_export.sh STRATA_BINARY [SOURCE_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
e2e_init "$@"

prepare_corpus .

# layer_pattern LS: layer 0 is linear attention (out_norm, k/v with H heads), layer 1 softmax
# attention (k/v with n_kv_heads heads), so both shapes of MODEL.md are exported.
JOB=("${TINY_SETS[@]}"
  --set model.layer_pattern=LS
  --set data.train=data/train --set data.val=data/val
  --set train.steps=30 --set optim.warmup_steps=3 --set optim.lr=1e-2
  --set train.eval_every=10 --set train.eval_batches=2 --set log.every=10
  --set checkpoint.every=10)

# ---- train -----------------------------------------------------------------------------------
run "$STRATA" train "${JOB[@]}" --set train.run_dir=run_a
expect_exit 0 "train"
expect_stderr_contains "step 1/30 | loss"
expect_stderr_contains "step 30/30 | loss"
expect_stderr_contains "checkpoint: saved step 30 to run_a/checkpoints/step_00000030"
expect_file run_a/metrics.jsonl
expect_file run_a/config.yaml

python3 - run_a/metrics.jsonl <<'EOF' || fail "metrics.jsonl checks"
import json, math, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
steps = [r["step"] for r in recs]
assert steps == list(range(1, 31)), f"metrics.jsonl steps {steps}, expected 1..30"
for r in recs:
    for k in ("loss", "grad_norm", "lr", "ms", "tokens_per_s"):
        assert k in r and math.isfinite(r[k]), f"step {r['step']}: bad or missing {k}: {r}"
first, last = recs[0]["loss"], recs[-1]["loss"]
# byte-level tokens: the untrained loss is about ln(256) = 5.55
assert 5.0 < first < 6.0, f"first loss {first}: expected about ln(256) = 5.55"
assert last < first - 1.0, f"loss did not fall clearly: first {first}, last {last}"
val = [r for r in recs if "val_loss" in r]
assert [r["step"] for r in val] == [10, 20, 30], f"val_loss at steps {[r['step'] for r in val]}"
assert all(math.isfinite(r["val_loss"]) for r in val)
assert val[-1]["val_loss"] < val[0]["val_loss"] + 0.5, "validation loss exploded"
# warmup: lr rises linearly over the first 3 steps to the peak 1e-2
lrs = [r["lr"] for r in recs]
assert lrs[0] < lrs[1] < lrs[2] and abs(lrs[2] - 1e-2) < 1e-6, f"warmup lrs {lrs[:4]}"
print(f"loss {first:.4f} -> {last:.4f}")
EOF

# ---- the resolved config -----------------------------------------------------------------------
grep -qE '^  dim: 32$' run_a/config.yaml || fail "run_a/config.yaml lacks the --set model.dim=32"
grep -qE '^  layer_pattern: LS$' run_a/config.yaml || fail "run_a/config.yaml lacks layer_pattern: LS"
run "$STRATA" train run_a/config.yaml --print-config
expect_exit 0 "re-parsing run_a/config.yaml"
# The dump of the re-parsed dump is the same config (only the source comment may differ).
diff <(grep -v '^#' run_a/config.yaml) <(last_stdout | grep -v '^#') >/dev/null ||
  fail "config.yaml does not round-trip through --print-config"

# ---- the checkpoint -------------------------------------------------------------------------------
CK=run_a/checkpoints
expect_file $CK/latest
[[ "$(cat $CK/latest)" == "step_00000030" ]] || fail "latest is '$(cat $CK/latest)', expected step_00000030"
expect_file $CK/step_00000030/manifest.yaml
expect_file $CK/step_00000020/manifest.yaml   # keep_last = 2
expect_absent $CK/step_00000010               # pruned

# ---- eval ----------------------------------------------------------------------------------------
run "$STRATA" eval --checkpoint $CK
expect_exit 0 "eval of the checkpoint root"
expect_stdout_matches '^step 30 val_loss [0-9]+\.[0-9]+ batches 2$' "eval output"
VAL=$(last_stdout | awk '{print $4}')
python3 -c "import math,sys; v=float(sys.argv[1]); assert math.isfinite(v) and 0 < v < 6, v" "$VAL" ||
  fail "eval val_loss '$VAL' is not a finite loss"
# The end-of-run validation in metrics.jsonl used the same data and batches: same value.
python3 - run_a/metrics.jsonl "$VAL" <<'EOF' || fail "eval val_loss differs from the trainer's"
import json, sys
last = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]
assert abs(last["val_loss"] - float(sys.argv[2])) < 1e-5, (last["val_loss"], sys.argv[2])
EOF

run "$STRATA" eval --checkpoint $CK/step_00000020 --batches 3
expect_exit 0 "eval of a step directory"
expect_stdout_matches '^step 20 val_loss [0-9.]+ batches 3$' "eval of step 20"

# ---- export ----------------------------------------------------------------------------------------
run "$STRATA" export --format safetensors --checkpoint $CK --output m.safetensors
expect_exit 0 "export f32"
expect_stdout_contains "from step 30 to m.safetensors"
run "$STRATA" export --format safetensors --checkpoint $CK --output m_bf16.safetensors --dtype bf16
expect_exit 0 "export bf16"
expect_file m.safetensors
expect_file m_bf16.safetensors

python3 - m.safetensors m_bf16.safetensors <<'EOF' || fail "safetensors checks"
import json, struct, sys

def load(path):
    b = open(path, "rb").read()
    (n,) = struct.unpack("<Q", b[:8])
    header = json.loads(b[8:8 + n].decode("utf-8"))
    return header, b[8 + n:]

V, D, L, H, Hkv, F = 256, 32, 2, 2, 1, 64
dh = D // H
expected = {"model.embed_tokens.weight": [V, D], "model.norm.weight": [D], "lm_head.weight": [V, D]}
for i, mixer in enumerate("LS"):
    p = f"model.layers.{i}."
    kv = (Hkv if mixer == "S" else H) * dh
    expected.update({
        p + "input_layernorm.weight": [D],
        p + "self_attn.q_proj.weight": [H * dh, D],
        p + "self_attn.k_proj.weight": [kv, D],
        p + "self_attn.v_proj.weight": [kv, D],
        p + "self_attn.o_proj.weight": [D, H * dh],
        p + "post_attention_layernorm.weight": [D],
        p + "mlp.gate_proj.weight": [F, D],
        p + "mlp.up_proj.weight": [F, D],
        p + "mlp.down_proj.weight": [D, F],
    })
    if mixer == "L":
        expected[p + "self_attn.out_norm.weight"] = [D]

def check(path, dtype, width):
    header, data = load(path)
    meta = header.pop("__metadata__", None)
    assert meta is not None, f"{path}: no __metadata__"
    assert set(header) == set(expected), (
        f"{path}: missing {sorted(set(expected) - set(header))}, "
        f"unexpected {sorted(set(header) - set(expected))}")
    spans = []
    for name, t in header.items():
        assert t["dtype"] == dtype, f"{path}: {name} dtype {t['dtype']}, expected {dtype}"
        assert t["shape"] == expected[name], f"{path}: {name} shape {t['shape']} != {expected[name]}"
        a, b = t["data_offsets"]
        numel = 1
        for s in t["shape"]:
            numel *= s
        assert b - a == numel * width, f"{path}: {name} spans {b - a} bytes, expected {numel * width}"
        spans.append((a, b))
    spans.sort()
    assert spans[0][0] == 0 and spans[-1][1] == len(data), f"{path}: data section not covered"
    for (a0, b0), (a1, b1) in zip(spans, spans[1:]):
        assert b0 == a1, f"{path}: gap or overlap between tensors at byte {b0}/{a1}"
    cfg = json.loads(meta["strata_config"])
    assert cfg["dim"] == D and cfg["n_layers"] == L and cfg["n_kv_heads"] == Hkv, cfg
    assert cfg["layer_pattern"] == "LS" and cfg["vocab_size"] == V, cfg
    assert meta.get("step") == "30", meta
    return header, data

h32, d32 = check(sys.argv[1], "F32", 4)
h16, d16 = check(sys.argv[2], "BF16", 2)

# The weights are trained values (not all zero/one), and bf16 = round-to-nearest-even of f32.
nonzero = 0
for name in expected:
    a, b = h32[name]["data_offsets"]
    f = struct.unpack(f"<{(b - a) // 4}I", d32[a:b])
    a, b = h16[name]["data_offsets"]
    g = struct.unpack(f"<{(b - a) // 2}H", d16[a:b])
    for u, h in zip(f, g):
        want = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
        assert h == want, f"{name}: bf16 0x{h:04x} is not the rounded f32 0x{u:08x}"
    nonzero += sum(1 for u in f if u & 0x7FFFFFFF)
assert nonzero > 0.9 * (len(d32) // 4), "exported weights are mostly zero"
print(f"safetensors: {len(expected)} tensors checked")
EOF

# ---- determinism: the same job from scratch into another run dir ------------------------------
run "$STRATA" train "${JOB[@]}" --set train.run_dir=run_b
expect_exit 0 "second identical run"
diff <(metrics_losses run_a/metrics.jsonl) <(metrics_losses run_b/metrics.jsonl) >&2 ||
  fail "two runs of the same job gave different losses (see diff above)"
[[ $(metrics_losses run_b/metrics.jsonl | wc -l) -eq 30 ]] || fail "run_b has not 30 steps"
# ... and the same weights: the f32 exports are byte-identical.
run "$STRATA" export --checkpoint run_b/checkpoints --output m_b.safetensors
expect_exit 0 "export of run_b"
cmp -s m.safetensors m_b.safetensors || fail "two runs of the same job exported different weights"
