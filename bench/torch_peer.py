#!/usr/bin/python3
"""torch_peer: an independent PyTorch (CPU) implementation of Strata's hybrid Linear-Llama.

Written from the math of MODEL.md (shared spec; the project's docs/MODEL.md restates it), not
from Strata's C++. Two uses:

  Reference loss of an exported checkpoint (what tests/e2e/torch_reference.sh checks):
    /usr/bin/python3 bench/torch_peer.py --reference --weights M.safetensors \
        --tokens DATA/val_000000.bin --seq-len T --batches N --micro-batch B [--fp64] [--verbose]
  M.safetensors comes from `strata export --format safetensors --dtype f32`; the configuration is
  read from the header's __metadata__.strata_config. --tokens takes one shard, a directory of
  *.bin, a glob or a prefix P (P_*.bin), resolved like Strata's data specs. Batches are cut
  exactly as Strata's EvalLoader does: windows of T+1 tokens starting at multiples of T inside
  each shard (never crossing shards), in order, wrapping around; inputs are the first T tokens,
  targets the last T. The printed value is sum(token CE) / #counted targets over all N batches
  of B sequences (targets == -1 ignored), i.e. what `strata eval --batches N` prints with
  train.micro_batch = B:   reference_loss <value>

  Training-speed peer (forward + backward + AdamW on CPU, fp32, or bf16 autocast with --bf16):
    /usr/bin/python3 bench/torch_peer.py --bench [--bf16] [--kv-heads 8|4] [--steps 3] [--threads N]
  Benchmark model: dim 512, 8 layers, 8 heads, ffn 1408, pattern LLLS, vocab 8192, silu+retnet,
  batch 4 x 512 tokens, 1 warm-up + 3 timed steps; prints
    torch_peer tokens_per_s <x> step_ms <y>
  plus the parameter count and the linear-attention formulation used.

Linear attention comes in two formulations (--la-form):
  recurrent  S_t = gamma S_{t-1} + k_t^T v_t, o_t = q_t S_t, a Python loop over t (the literal
             recurrence; default for --reference, slow)
  chunked    intra-chunk masked (Q K^T * decay) V plus an inter-chunk dh x dh state, all matmuls
             (default for --bench; --chunk C, default 64)
Both compute the same function; --reference --la-form chunked is a useful cross-check.

Needs Debian's python3-torch (1.13) for the system interpreter: always run /usr/bin/python3.
No other dependency than numpy (which python3-torch pulls in). For --bench also install
libopenblas0-openmp: `apt-get install --no-install-recommends python3-torch` leaves Debian's
libblas.so.3 on the reference (netlib) BLAS, with which a bench step takes minutes, not seconds;
the bench prints the BLAS library it loaded.
"""
import argparse
import glob
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

SHARD_MAGIC = 20240520
SHARD_HEADER_BYTES = 256 * 4


# ----------------------------------------------------------------------------------------------
# Configuration

def default_config():
    return {
        "vocab_size": 256, "dim": 128, "n_layers": 4, "n_heads": 4, "n_kv_heads": 2,
        "ffn_dim": 344, "layer_pattern": "LLLS", "norm_eps": 1e-5, "rope_theta": 10000.0,
        "linear_attention": {"feature_map": "silu", "decay": "retnet", "chunk_size": 64},
        "tie_embeddings": False,
    }


def mixer(cfg, i):
    p = cfg["layer_pattern"]
    return p[i % len(p)]


# ----------------------------------------------------------------------------------------------
# safetensors (parsed by hand: 8-byte LE header length, JSON header, raw little-endian data)

def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = memoryview(raw)[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        shape = tuple(info["shape"])
        dt = info["dtype"]
        if dt == "F32":
            a = np.frombuffer(data[b:e], dtype="<f4").astype(np.float32)
        elif dt == "BF16":
            u = np.frombuffer(data[b:e], dtype="<u2").astype(np.uint32) << 16
            a = u.view(np.float32)
        elif dt == "F64":
            a = np.frombuffer(data[b:e], dtype="<f8").astype(np.float32)
        else:
            raise SystemExit(f"{path}: tensor {name}: unsupported dtype {dt}")
        if a.size != int(np.prod(shape, dtype=np.int64)):
            raise SystemExit(f"{path}: tensor {name}: {a.size} values for shape {shape}")
        tensors[name] = torch.from_numpy(a.reshape(shape).copy())
    return tensors, meta


def check_weights(cfg, W):
    """Every expected tensor present with the MODEL.md shape; nothing unexpected."""
    D, H, F_ = cfg["dim"], cfg["n_heads"], cfg["ffn_dim"]
    dh = D // H
    want = {"model.embed_tokens.weight": (cfg["vocab_size"], D), "model.norm.weight": (D,)}
    if not cfg.get("tie_embeddings", False):
        want["lm_head.weight"] = (cfg["vocab_size"], D)
    for i in range(cfg["n_layers"]):
        p = f"model.layers.{i}."
        kvh = cfg["n_kv_heads"] if mixer(cfg, i) == "S" else H
        want[p + "input_layernorm.weight"] = (D,)
        want[p + "self_attn.q_proj.weight"] = (H * dh, D)
        want[p + "self_attn.k_proj.weight"] = (kvh * dh, D)
        want[p + "self_attn.v_proj.weight"] = (kvh * dh, D)
        want[p + "self_attn.o_proj.weight"] = (D, H * dh)
        if mixer(cfg, i) == "L":
            want[p + "self_attn.out_norm.weight"] = (D,)
        want[p + "post_attention_layernorm.weight"] = (D,)
        want[p + "mlp.gate_proj.weight"] = (F_, D)
        want[p + "mlp.up_proj.weight"] = (F_, D)
        want[p + "mlp.down_proj.weight"] = (D, F_)
    problems = []
    for k, s in want.items():
        if k not in W:
            problems.append(f"missing {k}")
        elif tuple(W[k].shape) != s:
            problems.append(f"{k}: shape {tuple(W[k].shape)}, expected {s}")
    for k in W:
        if k not in want:
            problems.append(f"unexpected tensor {k}")
    if problems:
        raise SystemExit("weights do not match the config:\n  " + "\n  ".join(problems))


# ----------------------------------------------------------------------------------------------
# Model math (MODEL.md), functional over a dict of tensors named as in the export

def rmsnorm(x, g, eps):
    y = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    return y if g is None else y * g


def rope(x, theta):
    """x: [B, T, heads, dh]; rotate-half RoPE with pos = t (0-based)."""
    B, T, Hh, dh = x.shape
    half = dh // 2
    j = torch.arange(half, dtype=torch.float64)
    freq = theta ** (-2.0 * j / dh)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]  # [T, half]
    c = torch.cos(ang).to(x.dtype)[None, :, None, :]
    s = torch.sin(ang).to(x.dtype)[None, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


def softmax_attention(a, W, p, cfg):
    B, T, D = a.shape
    H, Hkv = cfg["n_heads"], cfg["n_kv_heads"]
    dh = D // H
    q = (a @ W[p + "q_proj.weight"].t()).view(B, T, H, dh)
    k = (a @ W[p + "k_proj.weight"].t()).view(B, T, Hkv, dh)
    v = (a @ W[p + "v_proj.weight"].t()).view(B, T, Hkv, dh)
    q, k = rope(q, cfg["rope_theta"]), rope(k, cfg["rope_theta"])
    rep = H // Hkv
    k = k.repeat_interleave(rep, dim=2)  # head h reads kv head h // rep
    v = v.repeat_interleave(rep, dim=2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, dh]
    s = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    s = s.masked_fill(mask, float("-inf"))
    o = torch.softmax(s, dim=-1) @ v  # [B, H, T, dh]
    o = o.transpose(1, 2).reshape(B, T, H * dh)
    return o @ W[p + "o_proj.weight"].t()


def decays(cfg, H):
    if cfg["linear_attention"]["decay"] == "retnet":
        return [1.0 - 2.0 ** (-5 - h) for h in range(H)]
    return [1.0] * H


def la_recurrent(q, k, v, gam):
    """q, k, v: [B, H, T, dh]; literal recurrence, state in the input dtype."""
    B, H, T, dh = q.shape
    g = torch.tensor(gam, dtype=q.dtype).view(1, H, 1, 1)
    S = torch.zeros(B, H, dh, dh, dtype=q.dtype)
    outs = []
    for t in range(T):
        S = g * S + k[:, :, t, :, None] * v[:, :, t, None, :]  # k_t^T v_t
        outs.append((q[:, :, t, None, :] @ S).squeeze(2))
    return torch.stack(outs, dim=2)


def la_chunked(q, k, v, gam, C):
    """Same function: intra-chunk (Q K^T * Dmask) V plus inter-chunk state, all matmuls."""
    B, H, T, dh = q.shape
    lg = torch.tensor([math.log(x) for x in gam], dtype=torch.float64).view(H, 1, 1)
    S = torch.zeros(B, H, dh, dh, dtype=q.dtype)
    outs = []
    for c0 in range(0, T, C):
        c1 = min(T, c0 + C)
        n = c1 - c0
        i = torch.arange(n, dtype=torch.float64)
        diff = i[:, None] - i[None, :]
        Dm = torch.where(diff >= 0, torch.exp(lg * diff.clamp(min=0)), torch.zeros(()))
        Dm = Dm.to(q.dtype)  # [H, n, n]
        q_in = torch.exp(lg.view(H, 1) * (i + 1)).to(q.dtype).view(1, H, n, 1)  # gamma^(i+1)
        k_out = torch.exp(lg.view(H, 1) * (n - 1 - i)).to(q.dtype).view(1, H, n, 1)  # gamma^(n-1-j)
        g_n = torch.exp(lg.view(H) * n).to(q.dtype).view(1, H, 1, 1)
        qc, kc, vc = q[:, :, c0:c1], k[:, :, c0:c1], v[:, :, c0:c1]
        intra = ((qc @ kc.transpose(-1, -2)) * Dm) @ vc
        inter = (qc * q_in) @ S
        outs.append(intra + inter)
        S = g_n * S + (kc * k_out).transpose(-1, -2) @ vc
    return torch.cat(outs, dim=2)


def linear_attention(a, W, p, cfg, form, chunk):
    B, T, D = a.shape
    H = cfg["n_heads"]
    dh = D // H
    la = cfg["linear_attention"]
    phi = F.silu if la["feature_map"] == "silu" else (lambda x: x)
    q = phi(a @ W[p + "q_proj.weight"].t()).view(B, T, H, dh).transpose(1, 2)
    k = (phi(a @ W[p + "k_proj.weight"].t()) / math.sqrt(dh)).view(B, T, H, dh).transpose(1, 2)
    v = (a @ W[p + "v_proj.weight"].t()).view(B, T, H, dh).transpose(1, 2)
    gam = decays(cfg, H)
    o = la_recurrent(q, k, v, gam) if form == "recurrent" else la_chunked(q, k, v, gam, chunk)
    u = rmsnorm(o, None, cfg["norm_eps"])  # per head, no gain
    u = u.transpose(1, 2).reshape(B, T, H * dh)
    return (u * W[p + "out_norm.weight"]) @ W[p + "o_proj.weight"].t()


def forward_hidden(tokens, W, cfg, form="chunked", chunk=64):
    eps = cfg["norm_eps"]
    h = F.embedding(tokens, W["model.embed_tokens.weight"])
    for i in range(cfg["n_layers"]):
        p = f"model.layers.{i}."
        a = rmsnorm(h, W[p + "input_layernorm.weight"], eps)
        if mixer(cfg, i) == "S":
            h = h + softmax_attention(a, W, p + "self_attn.", cfg)
        else:
            h = h + linear_attention(a, W, p + "self_attn.", cfg, form, chunk)
        m = rmsnorm(h, W[p + "post_attention_layernorm.weight"], eps)
        mlp = F.silu(m @ W[p + "mlp.gate_proj.weight"].t()) * (m @ W[p + "mlp.up_proj.weight"].t())
        h = h + mlp @ W[p + "mlp.down_proj.weight"].t()
    return rmsnorm(h, W["model.norm.weight"], eps)


def output_weight(W, cfg):
    if cfg.get("tie_embeddings", False) or "lm_head.weight" not in W:
        return W["model.embed_tokens.weight"]
    return W["lm_head.weight"]


def loss_sum(tokens, targets, W, cfg, form="chunked", chunk=64):
    """(sum of CE over counted targets, count)."""
    h = forward_hidden(tokens, W, cfg, form, chunk)
    logits = h @ output_weight(W, cfg).t()
    V = logits.shape[-1]
    s = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-1,
                        reduction="sum")
    return s, int((targets != -1).sum())


# ----------------------------------------------------------------------------------------------
# Token shards, read as Strata's ShardSet / EvalLoader do

def resolve_shards(spec):
    if os.path.isfile(spec):
        return [spec]
    if os.path.isdir(spec):
        return sorted(os.path.join(spec, f) for f in os.listdir(spec) if f.endswith(".bin")
                      and os.path.isfile(os.path.join(spec, f)))
    if any(c in spec for c in "*?["):
        return sorted(glob.glob(spec))
    return sorted(glob.glob(spec + "_*.bin"))


def read_shard(path, vocab):
    with open(path, "rb") as f:
        raw = f.read()
    hdr = np.frombuffer(raw[:SHARD_HEADER_BYTES], dtype="<i4")
    if hdr[0] != SHARD_MAGIC:
        raise SystemExit(f"{path}: bad magic {hdr[0]}")
    width = {1: 2, 2: 4}.get(int(hdr[1]))
    if width is None:
        raise SystemExit(f"{path}: unknown version {hdr[1]}")
    n = int(hdr[2])
    if len(raw) != SHARD_HEADER_BYTES + n * width:
        raise SystemExit(f"{path}: size {len(raw)} does not match {n} tokens of {width} bytes")
    toks = np.frombuffer(raw[SHARD_HEADER_BYTES:], dtype="<u2" if width == 2 else "<u4")
    toks = toks.astype(np.int64)
    if n and toks.max() >= vocab:
        raise SystemExit(f"{path}: token {toks.max()} >= vocab {vocab}")
    return toks


class EvalWindows:
    def __init__(self, spec, T, vocab):
        paths = resolve_shards(spec)
        if not paths:
            raise SystemExit(f"no shards for '{spec}'")
        self.T = T
        self.windows = []  # (shard array, start)
        for pth in paths:
            toks = read_shard(pth, vocab)
            nw = (len(toks) - 1) // T if len(toks) > 0 else 0
            self.windows += [(toks, w * T) for w in range(max(nw, 0))]
        if not self.windows:
            raise SystemExit(f"'{spec}': no window of {T + 1} tokens")
        self.next = 0

    def batch(self, B):
        x = np.empty((B, self.T), np.int64)
        y = np.empty((B, self.T), np.int64)
        for b in range(B):
            toks, s = self.windows[self.next]
            x[b] = toks[s:s + self.T]
            y[b] = toks[s + 1:s + 1 + self.T]
            self.next = (self.next + 1) % len(self.windows)
        return torch.from_numpy(x), torch.from_numpy(y)


def cmd_reference(args):
    W, meta = load_safetensors(args.weights)
    cfg = default_config()
    if "strata_config" in meta:
        c = json.loads(meta["strata_config"])
        la = dict(cfg["linear_attention"], **c.pop("linear_attention", {}))
        cfg.update(c)
        cfg["linear_attention"] = la
    else:
        print("warning: no __metadata__.strata_config; using defaults", file=sys.stderr)
    check_weights(cfg, W)
    dtype = torch.float64 if args.fp64 else torch.float32
    W = {k: v.to(dtype) for k, v in W.items()}
    form = args.la_form or "recurrent"
    chunk = args.chunk or cfg["linear_attention"].get("chunk_size", 64)
    data = EvalWindows(args.tokens, args.seq_len, cfg["vocab_size"])
    total, count = 0.0, 0
    with torch.no_grad():
        for b in range(args.batches):
            x, y = data.batch(args.micro_batch)
            s, c = loss_sum(x, y, W, cfg, form, chunk)
            total += float(s)
            count += c
            if args.verbose:
                print(f"batch {b} loss_sum {float(s):.9g} counted {c} mean {float(s) / max(c, 1):.9g}")
    if args.verbose:
        print("config " + json.dumps(cfg, sort_keys=True))
        print(f"la_form {form} dtype {str(dtype).replace('torch.', '')}")
    print(f"reference_loss {total / count:.9g}")


# ----------------------------------------------------------------------------------------------
# Benchmark

def init_params(cfg, gen):
    D, H, F_, L = cfg["dim"], cfg["n_heads"], cfg["ffn_dim"], cfg["n_layers"]
    dh = D // H
    std, std_o = 0.02, 0.02 / math.sqrt(2 * L)

    def mat(o, i, s):
        return (torch.randn(o, i, generator=gen) * s).requires_grad_()

    def ones(n):
        return torch.ones(n).requires_grad_()

    W = {"model.embed_tokens.weight": mat(cfg["vocab_size"], D, std), "model.norm.weight": ones(D)}
    if not cfg["tie_embeddings"]:
        W["lm_head.weight"] = mat(cfg["vocab_size"], D, std)
    for i in range(L):
        p = f"model.layers.{i}."
        kvh = cfg["n_kv_heads"] if mixer(cfg, i) == "S" else H
        W[p + "input_layernorm.weight"] = ones(D)
        W[p + "self_attn.q_proj.weight"] = mat(H * dh, D, std)
        W[p + "self_attn.k_proj.weight"] = mat(kvh * dh, D, std)
        W[p + "self_attn.v_proj.weight"] = mat(kvh * dh, D, std)
        W[p + "self_attn.o_proj.weight"] = mat(D, H * dh, std_o)
        if mixer(cfg, i) == "L":
            W[p + "self_attn.out_norm.weight"] = ones(D)
        W[p + "post_attention_layernorm.weight"] = ones(D)
        W[p + "mlp.gate_proj.weight"] = mat(F_, D, std)
        W[p + "mlp.up_proj.weight"] = mat(F_, D, std)
        W[p + "mlp.down_proj.weight"] = mat(D, F_, std_o)
    return W


def loaded_blas():
    """The BLAS library torch actually loaded (Debian selects it via update-alternatives)."""
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                if "blas" in os.path.basename(path).lower() or "mkl" in path.lower():
                    libs.add(os.path.realpath(path))
    except OSError:
        pass
    return sorted(libs)


def cmd_bench(args):
    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    cfg = default_config()
    cfg.update({"vocab_size": 8192, "dim": 512, "n_layers": 8, "n_heads": 8,
                "n_kv_heads": args.kv_heads, "ffn_dim": 1408, "layer_pattern": "LLLS"})
    cfg["linear_attention"]["chunk_size"] = args.chunk or 64
    B, T = args.batch, args.seq_len
    gen = torch.Generator().manual_seed(1234)
    W = init_params(cfg, gen)
    nparam = sum(p.numel() for p in W.values())
    opt = torch.optim.AdamW(list(W.values()), lr=3e-3, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.1)
    form = args.la_form or "chunked"
    chunk = cfg["linear_attention"]["chunk_size"]
    print(f"torch_peer model: dim 512 layers 8 heads 8 kv_heads {args.kv_heads} ffn 1408 "
          f"pattern LLLS vocab 8192 params {nparam} ({nparam / 1e6:.2f}M)")
    precision = "bf16 autocast (fp32 master weights)" if args.bf16 else "fp32"
    print(f"torch_peer setup: torch {torch.__version__} {precision} CPU threads {threads} "
          f"batch {B}x{T} linear_attention {form}" +
          (f" chunk {chunk}" if form == "chunked" else "") +
          " (silu, retnet), AdamW + grad clip 1.0")
    blas = loaded_blas()
    print("torch_peer blas: " + (", ".join(blas) or "unknown"))
    if any("/blas/libblas" in b for b in blas) and not any("openblas" in b for b in blas):
        print("warning: torch uses the reference (netlib) BLAS, which is ~20x slower than OpenBLAS;"
              " install libopenblas0-openmp (Debian switches libblas.so.3 to it)", file=sys.stderr)
    times = []
    for step in range(args.warmup + args.steps):
        x = torch.randint(0, cfg["vocab_size"], (B, T), generator=gen)
        y = torch.randint(0, cfg["vocab_size"], (B, T), generator=gen)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        # --bf16: what a PyTorch user does for the CPU's bf16 units (fp32 master weights, the
        # matmuls autocast to bf16, the backward through the same casts).
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            s, c = loss_sum(x, y, W, cfg, form, chunk)
        loss = s.float() / c
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(W.values()), 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        kind = "warmup" if step < args.warmup else "timed"
        print(f"step {step} ({kind}) loss {float(loss):.4f} {dt * 1e3:.1f} ms", flush=True)
        if step >= args.warmup:
            times.append(dt)
    ms = 1e3 * sum(times) / len(times)
    tps = B * T / (ms / 1e3)
    print(f"torch_peer tokens_per_s {tps:.1f} step_ms {ms:.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--reference", action="store_true")
    mode.add_argument("--bench", action="store_true")
    ap.add_argument("--weights")
    ap.add_argument("--tokens")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batches", type=int, default=1)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4, help="bench: sequences per step")
    ap.add_argument("--la-form", choices=["recurrent", "chunked"])
    ap.add_argument("--chunk", type=int, help="chunk size of --la-form chunked")
    ap.add_argument("--fp64", action="store_true", help="reference in float64")
    ap.add_argument("--bf16", action="store_true", help="bench: torch.autocast('cpu', bfloat16)")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--kv-heads", type=int, default=8, choices=[8, 4])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    if args.reference:
        if not args.weights or not args.tokens:
            ap.error("--reference needs --weights and --tokens")
        cmd_reference(args)
    else:
        cmd_bench(args)


if __name__ == "__main__":
    main()
