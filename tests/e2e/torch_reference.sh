#!/usr/bin/env bash
# Strata's validation loss equals an independent PyTorch implementation of the model
# (bench/torch_peer.py, written from MODEL.md): train a tiny hybrid model for a few steps, export
# it as f32 safetensors, then `strata eval --batches 3` and `torch_peer.py --reference` on the
# same validation windows must agree (relative difference <= RTOL, below). Cases: both
# linear-attention feature maps x both decays (LLLS, GQA 4/2 heads, chunk 16 < seq_len 40 so the
# inter-chunk state is used), a tied-embedding model with pattern SL (softmax first, no
# lm_head.weight in the export), and EvalLoader semantics over two small shards with wrap-around.
#
# Needs Debian's python3-torch for the system interpreter (/usr/bin/python3); without it the
# test exits 77 (skipped).
#
# usage: bash tests/e2e/torch_reference.sh STRATA_BINARY [SOURCE_DIR]
PY=/usr/bin/python3
if ! why=$("$PY" -c 'import torch, numpy' 2>&1); then
  echo "SKIP: $PY cannot import torch/numpy (install python3-torch): ${why##*$'\n'}"
  exit 77
fi

source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
e2e_init "$@"
PEER="$SRC_DIR/bench/torch_peer.py"
[[ -f "$PEER" ]] || fail "missing $PEER"

prepare_corpus .

T=40 MB=2 NB=3
# Observed agreement is ~4e-8 (the 6 decimals `strata eval` prints). 1e-5 leaves a wide margin
# for fp32 summation order and still catches e.g. an off-by-one retnet decay exponent or a
# doubled norm eps, which 1e-4 does not always catch. TORCH_REF_RTOL overrides.
RTOL=${TORCH_REF_RTOL:-1e-5}
COMMON=(
  --set model.dim=32 --set model.n_layers=4 --set model.n_heads=4 --set model.n_kv_heads=2
  --set model.ffn_dim=64 --set data.seq_len=$T --set model.linear_attention.chunk_size=16
  --set data.train=data/train --set data.val=data/val
  --set train.steps=6 --set train.global_batch=4 --set train.micro_batch=$MB
  --set train.eval_every=0 --set optim.lr=1e-2 --set optim.warmup_steps=1
)

# compare NAME DIR [KEY=VALUE...]: `strata eval` of DIR's checkpoint (with the KEY=VALUE
# overrides) vs torch_peer on DIR/model.safetensors, same validation data, micro-batch, batches.
compare() {
  local name=$1 dir=$2
  shift 2
  local val=data/val mb=$MB sets=() x
  for x in "$@"; do
    sets+=(--set "$x")
    case $x in
      data.val=*) val=${x#data.val=} ;;
      train.micro_batch=*) mb=${x#train.micro_batch=} ;;
    esac
  done
  run "$STRATA" eval --checkpoint "$dir/checkpoints" --batches $NB "${sets[@]}"
  expect_exit 0 "$name: eval"
  local strata_loss ref_loss rel
  strata_loss=$(sed -n 's/.* val_loss \([^ ]*\) .*/\1/p' "$E2E_OUT/stdout")
  [[ -n "$strata_loss" ]] || fail "$name: no 'val_loss' in the eval output"
  run "$PY" "$PEER" --reference --weights "$dir/model.safetensors" --tokens "$val" \
    --seq-len $T --batches $NB --micro-batch "$mb"
  expect_exit 0 "$name: torch_peer --reference"
  ref_loss=$(sed -n 's/^reference_loss \(.*\)$/\1/p' "$E2E_OUT/stdout")
  [[ -n "$ref_loss" ]] || fail "$name: no 'reference_loss' in the torch_peer output"
  rel=$(awk -v a="$strata_loss" -v b="$ref_loss" 'BEGIN {
      d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b;
      if (a != a || b != b || m == 0) { print "nan"; exit }
      printf "%.3g", d / m }')
  echo "$name: strata $strata_loss torch $ref_loss rel_diff $rel (tolerance $RTOL)"
  awk -v r="$rel" -v t="$RTOL" 'BEGIN { exit !(r != "nan" && r + 0 <= t + 0) }' ||
    fail "$name: strata val_loss $strata_loss vs torch reference $ref_loss (relative $rel > $RTOL)"
}

# check_case NAME [--set KEY=VALUE...]: train a few steps, export f32, compare.
check_case() {
  local name=$1
  shift
  local dir="runs/$name"
  # Training on one thread: fast and immune to a busy machine; eval uses the default threads.
  run "$STRATA" train "${COMMON[@]}" --set train.run_dir="$dir" --set train.threads=1 "$@"
  expect_exit 0 "$name: train"
  run "$STRATA" export --format safetensors --checkpoint "$dir/checkpoints" \
    --output "$dir/model.safetensors" --dtype f32
  expect_exit 0 "$name: export"
  compare "$name" "$dir"
}

check_case silu_retnet --set model.layer_pattern=LLLS \
  --set model.linear_attention.feature_map=silu --set model.linear_attention.decay=retnet
check_case silu_none --set model.layer_pattern=LLLS \
  --set model.linear_attention.feature_map=silu --set model.linear_attention.decay=none
check_case identity_retnet --set model.layer_pattern=LLLS \
  --set model.linear_attention.feature_map=identity --set model.linear_attention.decay=retnet
check_case identity_none --set model.layer_pattern=LLLS \
  --set model.linear_attention.feature_map=identity --set model.linear_attention.decay=none
check_case tied_SL --set model.layer_pattern=SL --set model.tie_embeddings=true

# EvalLoader semantics: validation data of two small shards (100 and 90 tokens: 2 + 2 windows,
# none crossing the shard boundary) read as 3 batches of 3 sequences, so the loader wraps.
mkdir -p valx
"$PY" -c '
import sys, numpy as np
raw = open(sys.argv[1], "rb").read()
hdr = np.frombuffer(raw[:1024], "<i4")
tok = np.frombuffer(raw[1024:], "<u2" if hdr[1] == 1 else "<u4")
for i, (b, e) in enumerate([(0, 100), (100, 190)]):
    h = np.zeros(256, "<i4"); h[0] = 20240520; h[1] = 1; h[2] = e - b
    with open("%s/v_%d.bin" % (sys.argv[2], i), "wb") as f:
        f.write(h.tobytes()); f.write(tok[b:e].astype("<u2").tobytes())
' data/val_000000.bin valx || fail "could not write the small validation shards"
compare wrap_two_shards runs/silu_retnet data.val=valx train.micro_batch=3 train.global_batch=3
