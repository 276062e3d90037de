// The bf16 precision's softmax attention (core/softmax_attention.h): the same math and masks as
// the fp32 kernel, its products on bf16 operands with fp32 accumulation, as batched GEMMs over
// the heads (core/batched_gemm.h, oneDNN on the AMX tiles here) instead of one small fp32 GEMM
// per thread and tile. The fp32 kernel's per-thread GEMMs run at one core's fp32 rate, and a
// per-thread oneDNN bf16 call costs more in overhead than it saves at these sizes; one batched
// call per product and query block keeps the library's threads and tiles busy.
//
// Layout: for batch entry b and a block of m queries, q (and dout) rows are packed head-major as
// [group][Hkv][m][dh] bf16 (slot r*Hkv + g is head g*group + r), k and v as [Hkv][nk][dh], so for
// each r one batched GEMM over the Hkv groups pairs every head with its kv head, and every batch
// entry is dense (oneDNN's fast path). The block's keys end at its last query's causal horizon.
//
// Precision: S = q kᵀ and the softmax, lse, D and the gradients' sums in fp32; P (for P v and
// Pᵀ dout), dout and dS (for dS k and dSᵀ q) are rounded to bf16 as the GEMMs read them, as
// flash attention does in bf16. The forward and the backward compute S with the same GEMMs on
// the same operands, so the backward's P are the forward's bit for bit.
#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "core/batched_gemm.h"
#include "core/memory.h"
#include "core/softmax_attention.h"
#include "core/vexp.h"

namespace strata {
namespace {

// Scores held at once per block (fp32 [H, m, nk]): bounds the block's rows for long key ranges.
constexpr int64_t kScoreBudgetBytes = int64_t{2} << 20;
constexpr int64_t kMaxBlockRows = 128;

struct Geometry {
  int64_t Tq, Tk, H, Hkv, dh, group, ldq, ldk, m;
  float scale;
  explicit Geometry(const SoftmaxAttentionShape& s)
      : Tq(s.Tq),
        Tk(s.Tk),
        H(s.H),
        Hkv(s.Hkv),
        dh(s.dh),
        group(s.H / s.Hkv),
        ldq(s.H * s.dh),
        ldk(s.Hkv * s.dh),
        m(block_rows(s)),
        scale(1.f / std::sqrt(static_cast<float>(s.dh))) {}
  // head of packed slot r * Hkv + g
  int64_t head(int64_t slot) const { return (slot % Hkv) * group + slot / Hkv; }

  // Query rows per block: up to kMaxBlockRows, fewer when the scores would pass the budget; a
  // multiple of 16 (the AMX tile's rows) when it can be.
  static int64_t block_rows(const SoftmaxAttentionShape& s) {
    const int64_t fit = kScoreBudgetBytes / (s.H * std::max<int64_t>(s.Tk, 1) * 4);
    int64_t m = std::min(kMaxBlockRows, std::max<int64_t>(fit, 16));
    if (m > 16) m -= m % 16;
    return std::max<int64_t>(1, std::min(m, s.Tq));
  }
};

// The kernel's one allocation (charged to activations; launch/memory_plan_block.cpp replays
// it), carved into its arrays. Sized for the largest block.
struct Workspace {
  FloatBuffer buf;
  bf16 *Q, *K, *V, *P, *dO = nullptr;  // [H][m][dh], [Hkv][nk][dh] x2, [H][m][nk], [H][m][dh]
  float *S, *out;                      // [H][m][nk], [H][m][dh]
  float *dP = nullptr, *D = nullptr;   // [H][m][nk], [H][m]
  float *dK = nullptr, *dV = nullptr, *dKb = nullptr, *dVb = nullptr;  // [Hkv][Tk|nk][dh]

  // Floats of each piece, in order, rounded up to whole cache lines.
  static std::vector<int64_t> pieces(const Geometry& g, bool backward) {
    const int64_t q = g.H * g.m * g.dh, kv = g.Hkv * g.Tk * g.dh, s = g.H * g.m * g.Tk;
    std::vector<int64_t> p = {q / 2 + 1, kv / 2 + 1, kv / 2 + 1, s / 2 + 1, s, q};
    if (backward) p.insert(p.end(), {q / 2 + 1, s, g.H * g.m, kv, kv, kv, kv});
    for (int64_t& n : p) n = (n + 15) / 16 * 16;
    return p;
  }
  static int64_t floats(const Geometry& g, bool backward) {
    int64_t n = 0;
    for (int64_t p : pieces(g, backward)) n += p;
    return n;
  }

  Workspace(const Geometry& g, bool backward)
      : buf(FloatBuffer::uninitialised(floats(g, backward), MemCategory::activations)) {
    float* at = buf.data();
    const std::vector<int64_t> p = pieces(g, backward);
    size_t i = 0;
    auto next = [&] { return std::exchange(at, at + p[i++]); };
    auto next16 = [&] { return reinterpret_cast<bf16*>(next()); };
    Q = next16(), K = next16(), V = next16(), P = next16(), S = next(), out = next();
    if (!backward) return;
    dO = next16(), dP = next(), D = next(), dK = next(), dV = next(), dKb = next(), dVb = next();
  }
};

// dst[slot][i][c] (dense, bf16) = src[i * ld + head(slot) * dh + c] for i < rows; heads = H
// (q-like, head-major slots) or Hkv (k and v, slot = kv head). Work-shared: called inside a
// parallel region, no barrier at its end.
template <class S>
void pack_heads(const Geometry& g, const S* src, int64_t ld, int64_t rows, bool kv, bf16* dst) {
  const int64_t heads = kv ? g.Hkv : g.H;
#pragma omp for collapse(2) schedule(static) nowait
  for (int64_t slot = 0; slot < heads; ++slot)
    for (int64_t i = 0; i < rows; ++i) {
      const S* x = src + i * ld + (kv ? slot : g.head(slot)) * g.dh;
      bf16* y = dst + (slot * rows + i) * g.dh;
      for_lanes(0, g.dh, [&](auto lane, int64_t c) { vstore(y + c, vload(x + c, lane)); });
    }
}

// The inverse for a q-like fp32 result: dst[i * ldq + head(slot) * dh + c] = src[slot][i][c],
// into fp32 or rounded once into bf16 (the forward's o as the bf16 precision saves it).
template <class D>
void unpack_heads(const Geometry& g, const float* src, int64_t rows, D* dst) {
#pragma omp for collapse(2) schedule(static) nowait
  for (int64_t slot = 0; slot < g.H; ++slot)
    for (int64_t i = 0; i < rows; ++i) {
      const float* x = src + (slot * rows + i) * g.dh;
      D* y = dst + i * g.ldq + g.head(slot) * g.dh;
      for_lanes(0, g.dh, [&](auto lane, int64_t c) { vstore(y + c, vload(x + c, lane)); });
    }
}

// One block of m queries from i0 against keys [0, nk) of batch entry b.
struct Block {
  int64_t b, i0, m, nk;
};

// Out[slot] = A[slot] X[g(slot)]ᵀ for every head (A [m, dh], X [nk, dh]): one batched GEMM per
// group member r. The scores q kᵀ, and dP = dout vᵀ.
void per_head_nt(const Geometry& g, const Block& blk, const bf16* A, const bf16* X, float* Out) {
  for (int64_t r = 0; r < g.group; ++r)
    batched_gemm(false, true, g.Hkv, blk.m, blk.nk, g.dh, A + r * g.Hkv * blk.m * g.dh, X, 0.f,
                 Out + r * g.Hkv * blk.m * blk.nk);
}
// Out[slot] = A[slot] X[g(slot)] (A [m, nk], X [nk, dh]): P v and dS k.
void per_head_nn(const Geometry& g, const Block& blk, const bf16* A, const bf16* X, float* Out) {
  for (int64_t r = 0; r < g.group; ++r)
    batched_gemm(false, false, g.Hkv, blk.m, g.dh, blk.nk, A + r * g.Hkv * blk.m * blk.nk, X, 0.f,
                 Out + r * g.Hkv * blk.m * g.dh);
}
// Out[g] = Σ_r A[slot]ᵀ X[slot] over the group's heads (A [m, nk], X [m, dh]): Pᵀ dout, dSᵀ q.
void per_group_tn(const Geometry& g, const Block& blk, const bf16* A, const bf16* X, float* Out) {
  for (int64_t r = 0; r < g.group; ++r)
    batched_gemm(true, false, g.Hkv, blk.nk, g.dh, blk.m, A + r * g.Hkv * blk.m * blk.nk,
                 X + r * g.Hkv * blk.m * g.dh, r ? 1.f : 0.f, Out);
}

// Scores to probabilities in place, row by row: visible keys exp(scale s - l), masked keys 0,
// and P (bf16) beside them. With lse_out, l = log Σ exp is formed (forward) and stored; without,
// it is read from lse_in (backward), so both give the same P. Work-shared, as pack_heads.
void probabilities(const SoftmaxAttentionShape& s, const Geometry& g, const Block& blk, float* S,
                   bf16* P, float* lse_out, const float* lse_in) {
  const int64_t nk = blk.nk;
  std::vector<float> scratch(static_cast<size_t>(nk));
#pragma omp for schedule(static) nowait
  for (int64_t row = 0; row < g.H * blk.m; ++row) {
    const int64_t slot = row / blk.m, i = row % blk.m;
    float* p = S + row * nk;
    const int64_t jmax = softmax_last_key(s, blk.i0 + i, nk);
    for_lanes(0, jmax + 1,
              [&](auto lane, int64_t j) { vstore(p + j, vload(p + j, lane) * g.scale); });
    const int64_t at = (blk.b * g.H + g.head(slot)) * g.Tq + blk.i0 + i;
    float l;
    if (lse_out) {
      const float mx = max_of(p, jmax + 1);
      l = mx + std::log(static_cast<float>(exp_shift_sum(p, scratch.data(), jmax + 1, mx)));
      lse_out[at] = l;
    } else {
      l = lse_in[at];
    }
    exp_shift_scale(p, jmax + 1, l, 1.f);
    std::fill(p + jmax + 1, p + nk, 0.f);  // masked keys: exact zeros, in P and in dS
    bf16* pb = P + row * nk;
    for_lanes(0, nk, [&](auto lane, int64_t j) { vstore(pb + j, vload(p + j, lane)); });
  }
}

// The block's operands packed, in one parallel region: q's rows, k's and v's keys, and with
// dout (the backward) its rows too.
template <class S>
void pack_block(const Geometry& g, const Block& blk, const S* q, const S* k, const S* v,
                const float* dout, Workspace& w) {
  const int64_t qofs = (blk.b * g.Tq + blk.i0) * g.ldq, kofs = blk.b * g.Tk * g.ldk;
#pragma omp parallel
  {
    pack_heads(g, q + qofs, g.ldq, blk.m, false, w.Q);
    pack_heads(g, k + kofs, g.ldk, blk.nk, true, w.K);
    pack_heads(g, v + kofs, g.ldk, blk.nk, true, w.V);
    if (dout) pack_heads(g, dout + qofs, g.ldq, blk.m, false, w.dO);
  }
}

template <class F>
void for_each_block(const SoftmaxAttentionShape& s, int64_t m, F&& f) {
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t i0 = 0; i0 < s.Tq; i0 += m) {
      const int64_t rows = std::min(m, s.Tq - i0);
      f(Block{b, i0, rows, softmax_tile_keys(s, i0, rows)});
    }
}

}  // namespace

int64_t softmax_attention_bf16_workspace_floats(const SoftmaxAttentionShape& s, bool backward) {
  if (s.B == 0 || s.Tq == 0) return 0;
  return Workspace::floats(Geometry(s), backward);
}

namespace {

// The forward on q, k, v stored as S (fp32 values, rounded as they are packed, or the bf16
// operands themselves: the same packed bits), o written as D.
template <class S, class D>
void forward_blocks(const SoftmaxAttentionShape& s, const S* q, const S* k, const S* v, D* o,
                    float* lse) {
  check_softmax_attention_shape(s);
  if (s.B == 0 || s.Tq == 0) return;
  const Geometry g(s);
  Workspace w(g, false);
  for_each_block(s, g.m, [&](const Block& blk) {
    const int64_t qofs = (blk.b * g.Tq + blk.i0) * g.ldq;
    pack_block(g, blk, q, k, v, static_cast<const float*>(nullptr), w);
    per_head_nt(g, blk, w.Q, w.K, w.S);
#pragma omp parallel
    probabilities(s, g, blk, w.S, w.P, lse, nullptr);
    per_head_nn(g, blk, w.P, w.V, w.out);
#pragma omp parallel
    unpack_heads(g, w.out, blk.m, o + qofs);
  });
}

}  // namespace

void softmax_attention_forward_bf16(const SoftmaxAttentionShape& s, const float* q, const float* k,
                                    const float* v, float* o, float* lse) {
  forward_blocks(s, q, k, v, o, lse);
}

void softmax_attention_forward_bf16(const SoftmaxAttentionShape& s, const bf16* q, const bf16* k,
                                    const bf16* v, bf16* o, float* lse) {
  forward_blocks(s, q, k, v, o, lse);
}

namespace {

// D[slot][i] = Σ_c dout ⊙ o over the block's rows (fp32; o as saved). Work-shared.
void row_dots(const Geometry& g, const Block& blk, const float* dout, const bf16* o, float* D) {
#pragma omp for schedule(static) nowait
  for (int64_t row = 0; row < g.H * blk.m; ++row) {
    const int64_t slot = row / blk.m, i = row % blk.m;
    const int64_t ofs = ((blk.b * g.Tq + blk.i0 + i) * g.H + g.head(slot)) * g.dh;
    float d = 0.f;
    for (int64_t c = 0; c < g.dh; ++c) d += dout[ofs + c] * bf16_to_fp32(o[ofs + c]);
    D[row] = d;
  }
}

// dS = scale · P ⊙ (dP − D), rounded to bf16 into P's slot (P's last reader, Pᵀ dout, is done).
void score_grads(const Geometry& g, const Block& blk, const float* Pf, const float* dP,
                 const float* D, bf16* dS) {
  const int64_t nk = blk.nk;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < g.H * blk.m; ++row) {
    const float* p = Pf + row * nk;
    const float* dp = dP + row * nk;
    bf16* y = dS + row * nk;
    const float d = D[row];
    for_lanes(0, nk, [&](auto lane, int64_t j) {
      using V = decltype(lane);
      vstore(y + j, V(g.scale) * vload(p + j, lane) * (vload(dp + j, lane) - V(d)));
    });
  }
}

// acc[g][j][c] += part[g][j][c] for j < nk (acc [Hkv][Tk][dh], part [Hkv][nk][dh]).
// Work-shared.
void add_keys(const Geometry& g, int64_t nk, const float* part, float* acc) {
#pragma omp for collapse(2) schedule(static) nowait
  for (int64_t h = 0; h < g.Hkv; ++h)
    for (int64_t j = 0; j < nk; ++j) {
      const float* x = part + (h * nk + j) * g.dh;
      float* y = acc + (h * g.Tk + j) * g.dh;
      for (int64_t c = 0; c < g.dh; ++c) y[c] += x[c];
    }
}

// acc [Hkv][Tk][dh] to the rows of dst [Tk, Hkv, dh], and acc zeroed for the next entry.
void unpack_keys(const Geometry& g, float* acc, float* dst) {
#pragma omp for collapse(2) schedule(static) nowait
  for (int64_t h = 0; h < g.Hkv; ++h)
    for (int64_t j = 0; j < g.Tk; ++j) {
      float* x = acc + (h * g.Tk + j) * g.dh;
      std::copy_n(x, g.dh, dst + j * g.ldk + h * g.dh);
      std::fill_n(x, g.dh, 0.f);
    }
}

}  // namespace

void softmax_attention_backward(const SoftmaxAttentionShape& s, const bf16* q, const bf16* k,
                                const bf16* v, const bf16* o, const float* lse, const float* dout,
                                float* dq, float* dk, float* dv) {
  check_softmax_attention_shape(s);
  const Geometry g(s);
  std::fill(dk, dk + s.B * g.Tk * g.ldk, 0.f);
  std::fill(dv, dv + s.B * g.Tk * g.ldk, 0.f);
  if (s.B == 0 || s.Tq == 0) return;
  Workspace w(g, true);
  std::fill(w.dK, w.dK + g.Hkv * g.Tk * g.dh, 0.f);
  std::fill(w.dV, w.dV + g.Hkv * g.Tk * g.dh, 0.f);
  for_each_block(s, g.m, [&](const Block& blk) {
    const int64_t qofs = (blk.b * g.Tq + blk.i0) * g.ldq, kofs = blk.b * g.Tk * g.ldk;
    pack_block(g, blk, q, k, v, dout, w);
    per_head_nt(g, blk, w.Q, w.K, w.S);
#pragma omp parallel
    {
      probabilities(s, g, blk, w.S, w.P, nullptr, lse);
      row_dots(g, blk, dout, o, w.D);
    }
    per_group_tn(g, blk, w.P, w.dO, w.dVb);  // dV += Pᵀ dO
    per_head_nt(g, blk, w.dO, w.V, w.dP);    // dP = dO Vᵀ
    score_grads(g, blk, w.S, w.dP, w.D, w.P);
    per_head_nn(g, blk, w.P, w.K, w.out);      // dQ = dS K
    per_group_tn(g, blk, w.P, w.Q, w.dKb);     // dK += dSᵀ Q
    const bool last = blk.i0 + blk.m == g.Tq;  // of this batch entry
#pragma omp parallel
    {
      unpack_heads(g, w.out, blk.m, dq + qofs);
      add_keys(g, blk.nk, w.dKb, w.dK);
      add_keys(g, blk.nk, w.dVb, w.dV);
#pragma omp barrier
      if (last) {
        unpack_keys(g, w.dK, dk + kofs);
        unpack_keys(g, w.dV, dv + kofs);
      }
    }
  });
}

}  // namespace strata
