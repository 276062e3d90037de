#include "parallel/sequence.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "core/bf16.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/memory.h"
#include "core/omp_guard.h"
#include "core/profile.h"
#include "core/softmax_attention.h"
#include "core/threads.h"
#include "core/vexp.h"

namespace strata::sequence {
namespace {

// ---------------------------------------------------------------------------------------------
// LASP-2 math: per (batch, head) dh×dh products with row weights. No communication here.
// Row weights of a chunk of n rows: λ_i = γ^(i+1) (how much of the entering state row i sees)
// and μ_j = γ^(n-1-j) (how much of row j survives to the chunk's end).
// ---------------------------------------------------------------------------------------------

// Decay weights below this are flushed to 0. A term weighted by 1e-30 cannot show in an fp32 sum
// of O(1) terms, while subnormal weights (retnet head 0 reaches them after ~2800 tokens) make
// every product in the weighted GEMMs take the slow subnormal path: 3-4x slower chunk states at
// n = 8K.
constexpr double kTinyWeight = 1e-30;

// γ^e in double, rounded once to fp32. One pow per exponent (no running product), so the error
// does not grow with the exponent. For long sequences and strong decays it goes to 0, which is
// the right limit.
float decay_power(float gamma, int64_t e) {
  const double w = std::pow(static_cast<double>(gamma), static_cast<double>(e));
  return w < kTinyWeight ? 0.f : static_cast<float>(w);
}

// pw[h*(n+1) + e] = γ_h^e for e = 0..n. [H, n+1]
std::vector<float> decay_table(const float* gamma, int64_t H, int64_t n) {
  std::vector<float> pw(static_cast<size_t>(H * (n + 1)));
  for (int64_t h = 0; h < H; ++h)
    for (int64_t e = 0; e <= n; ++e) {
      pw[h * (n + 1) + e] = decay_power(gamma[h], e);
      if (pw[h * (n + 1) + e] == 0.f) break;  // γ <= 1: every later power is flushed too
    }
  return pw;
}

// Y[n, dh] (contiguous) = diag(w) X, X: [n, dh] with row stride ld.
template <class W>
void scaled_rows(const float* X, int64_t n, int64_t dh, int64_t ld, W w, float* Y) {
  for (int64_t i = 0; i < n; ++i) {
    const float a = w(i);
    for (int64_t c = 0; c < dh; ++c) Y[i * dh + c] = a * X[i * ld + c];
  }
}

// Runs f(b, h, pw_h, scratch) over every (batch, head); scratch is [n, dh] per thread and pw_h
// the head's [n+1] decay powers.
template <class F>
void for_each_head(const LinearAttentionShape& s, const std::vector<float>& pw, int64_t work, F f) {
  const int64_t B = s.B, H = s.H, n = s.T, dh = s.dh;
  OmpExceptionGuard guard;
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      guard.run([&] {
        std::vector<float> X(static_cast<size_t>(n * dh));  // [n, dh] row-scaled copy
        f(b, h, pw.data() + h * (n + 1), X.data());
      });
  guard.rethrow();
}

// M[b,h] = Kᵀ diag(μ) V: the chunk's final state when it starts from zero. M: [B, H, dh, dh]
void chunk_states(const LinearAttentionShape& s, const std::vector<float>& pw, const float* k,
                  const float* v, float* M) {
  const int64_t n = s.T, H = s.H, dh = s.dh, ld = H * dh;
  for_each_head(s, pw, s.B * H * n * dh * dh, [&](int64_t b, int64_t h, const float* p, float* X) {
    const int64_t ofs = (b * n * H + h) * dh;
    scaled_rows(
        v + ofs, n, dh, ld, [&](int64_t j) { return p[n - 1 - j]; }, X);
    sgemm(true, false, dh, dh, n, 1.f, k + ofs, ld, X, dh, 0.f, M + (b * H + h) * dh * dh, dh);
  });
}

// dP[b,h] = Qᵀ diag(λ) dO: the gradient w.r.t. the state entering the chunk. dP: [B, H, dh, dh]
void prefix_grads(const LinearAttentionShape& s, const std::vector<float>& pw, const float* q,
                  const float* dout, float* dP) {
  const int64_t n = s.T, H = s.H, dh = s.dh, ld = H * dh;
  for_each_head(s, pw, s.B * H * n * dh * dh, [&](int64_t b, int64_t h, const float* p, float* X) {
    const int64_t ofs = (b * n * H + h) * dh;
    scaled_rows(
        dout + ofs, n, dh, ld, [&](int64_t i) { return p[i + 1]; }, X);
    sgemm(true, false, dh, dh, n, 1.f, q + ofs, ld, X, dh, 0.f, dP + (b * H + h) * dh * dh, dh);
  });
}

// out = Σ_{q in [q0, q1)} γ_h^(n·|q - anchor|) parts[q] over per-rank blocks
// parts: [sp][B, H, dh, dh], summed in increasing q (a fixed order: the same numbers on every
// run). The prefix of rank r is anchor r-1 over [0, r); its suffix anchor r+1 over [r+1, sp).
void decayed_sum(const LinearAttentionShape& s, const float* gamma, const float* parts, int64_t q0,
                 int64_t q1, int64_t anchor, float* out) {
  const int64_t dd = s.dh * s.dh, per = s.B * s.H * dd;
  std::fill(out, out + per, 0.f);
  for (int64_t q = q0; q < q1; ++q)
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t h = 0; h < s.H; ++h) {
        const float c = decay_power(gamma[h], s.T * std::abs(q - anchor));
        const float* src = parts + q * per + (b * s.H + h) * dd;
        float* dst = out + (b * s.H + h) * dd;
        for (int64_t i = 0; i < dd; ++i) dst[i] += c * src[i];
      }
}

// o += diag(λ) Q P: what the state P entering the chunk adds to its outputs.
void add_prefix_outputs(const LinearAttentionShape& s, const std::vector<float>& pw, const float* q,
                        const float* P, float* o) {
  const int64_t n = s.T, H = s.H, dh = s.dh, ld = H * dh;
  for_each_head(s, pw, s.B * H * n * dh * dh, [&](int64_t b, int64_t h, const float* p, float* X) {
    const int64_t ofs = (b * n * H + h) * dh;
    scaled_rows(
        q + ofs, n, dh, ld, [&](int64_t i) { return p[i + 1]; }, X);
    sgemm(false, false, n, dh, dh, 1.f, X, dh, P + (b * H + h) * dh * dh, dh, 1.f, o + ofs, ld);
  });
}

// dq += diag(λ) dO Pᵀ: the prefix's path from the chunk's queries to its outputs.
void add_prefix_query_grads(const LinearAttentionShape& s, const std::vector<float>& pw,
                            const float* dout, const float* P, float* dq) {
  const int64_t n = s.T, H = s.H, dh = s.dh, ld = H * dh;
  for_each_head(s, pw, s.B * H * n * dh * dh, [&](int64_t b, int64_t h, const float* p, float* X) {
    const int64_t ofs = (b * n * H + h) * dh;
    scaled_rows(
        dout + ofs, n, dh, ld, [&](int64_t i) { return p[i + 1]; }, X);
    sgemm(false, true, n, dh, dh, 1.f, X, dh, P + (b * H + h) * dh * dh, dh, 1.f, dq + ofs, ld);
  });
}

// dk += diag(μ) V Dᵀ, dv += diag(μ) K D with D = dL/dM (the later ranks' suffix): the chunk's
// keys and values reach the later ranks' outputs only through M = Kᵀ diag(μ) V.
void add_suffix_kv_grads(const LinearAttentionShape& s, const std::vector<float>& pw,
                         const float* k, const float* v, const float* D, float* dk, float* dv) {
  const int64_t n = s.T, H = s.H, dh = s.dh, ld = H * dh;
  for_each_head(s, pw, 2 * s.B * H * n * dh * dh,
                [&](int64_t b, int64_t h, const float* p, float* X) {
                  const int64_t ofs = (b * n * H + h) * dh;
                  const float* Dh = D + (b * H + h) * dh * dh;
                  auto mu = [&](int64_t j) { return p[n - 1 - j]; };
                  scaled_rows(v + ofs, n, dh, ld, mu, X);
                  sgemm(false, true, n, dh, dh, 1.f, X, dh, Dh, dh, 1.f, dk + ofs, ld);
                  scaled_rows(k + ofs, n, dh, ld, mu, X);
                  sgemm(false, false, n, dh, dh, 1.f, X, dh, Dh, dh, 1.f, dv + ofs, ld);
                });
}

void check_linear(const Comm& sp, const LinearAttentionShape& s) {
  STRATA_CHECK(s.B >= 0 && s.T >= 1 && s.H >= 1 && s.dh >= 1 && s.chunk >= 1,
               "bad LASP-2 shape on " + sp.describe());
}

// ---------------------------------------------------------------------------------------------
// LASP-2H layout: the all-gather and reduce-scatter move equal per-rank blocks
// [sp][2][B, n, Hkv, dh] (this rank's K then V); the kernels want [B, sp*n, Hkv, dh].
// ---------------------------------------------------------------------------------------------

// y = x over n floats, over the threads (one thread's copy is memory-latency bound), through
// core/vexp.h's blocked lanes as the element-wise ops.
template <class S>
void copy_threaded(const S* x, int64_t n, S* y) {
  parallel_for_lanes(n, [&](auto lane, int64_t i) { vstore(y + i, vload(x + i, lane)); });
}

// Packs one rank's block: blk = [2][B, n, Hkv, dh] from x, y (rows of length row = Hkv*dh).
template <class S>
void pack_kv(const S* x, const S* y, int64_t chunk, S* blk) {
  std::copy(x, x + chunk, blk);
  std::copy(y, y + chunk, blk + chunk);
}

// blocks [sp][2][B, n, row] <-> (X, Y) [B, sp*n, row]. to_full: blocks -> X, Y; else the reverse.
template <class S>
void rearrange_kv(S* blocks, S* X, S* Y, int64_t sp, int64_t B, int64_t n, int64_t row,
                  bool to_full) {
  const int64_t chunk = B * n * row, seg = n * row;  // one rank's K (or V); one sequence's rows
  for (int64_t r = 0; r < sp; ++r)
    for (int64_t b = 0; b < B; ++b) {
      S* bk = blocks + r * 2 * chunk + b * seg;  // rank r's K rows of sequence b
      S* bv = bk + chunk;                        // rank r's V rows of sequence b
      S* fk = X + (b * sp + r) * seg;            // global rows [r*n, (r+1)*n) of sequence b
      S* fv = Y + (b * sp + r) * seg;
      if (to_full) {
        std::copy(bk, bk + seg, fk);
        std::copy(bv, bv + seg, fv);
      } else {
        std::copy(fk, fk + seg, bk);
        std::copy(fv, fv + seg, bv);
      }
    }
}

}  // namespace

namespace {

// x [n] as fp32 for LASP-2's cross-rank products: x itself, or (bf16) an exact copy in tmp. Made
// only with a second rank: alone, the kernel alone reads q, k, v, as they are stored.
const float* cross_rank_values(const float* x, int64_t, FloatBuffer&) { return x; }
const float* cross_rank_values(const bf16* x, int64_t n, FloatBuffer& tmp) {
  if (n == 0) return nullptr;  // alone: nobody reads it
  tmp = FloatBuffer::uninitialised(n, MemCategory::activations);
  from_bf16(x, tmp.data(), n);
  return tmp.data();
}

// Both storage types of q, k, v (float, or the bf16 precision's operands).
template <class S>
void lasp2_forward(Comm& sp, const LinearAttentionShape& s, const S* q_in, const S* k_in,
                   const S* v_in, const float* gamma, float* o, float* prefix) {
  ProfScope prof_scope(ProfOp::attention);
  check_linear(sp, s);
  const int64_t R = sp.size(), r = sp.rank(), per = s.B * s.H * s.dh * s.dh;
  const int64_t n = R > 1 ? s.B * s.T * s.H * s.dh : 0;
  FloatBuffer q_tmp, k_tmp, v_tmp;
  const float* q = cross_rank_values(q_in, n, q_tmp);
  const float* k = cross_rank_values(k_in, n, k_tmp);
  const float* v = cross_rank_values(v_in, n, v_tmp);
  const std::vector<float> pw = decay_table(gamma, s.H, s.T);

  // This chunk's state from zero, written straight into its slot of the gather buffer (the
  // all-gather runs in place). Alone on its sequence nobody reads it: neither is formed.
  // [sp][B, H, dh, dh]
  FloatBuffer states = FloatBuffer::uninitialised(R > 1 ? R * per : 0, MemCategory::comm);
  CommHandle gather;
  if (R > 1) {
    chunk_states(s, pw, k, v, states.data() + r * per);
    gather = sp.iall_gather(states.data() + r * per, states.data(), per);
  }

  // Overlapped with the gather: the chunk's own (intra-rank) attention from a zero state.
  strata::linear_attention_forward(s, q_in, k_in, v_in, gamma, o, nullptr, nullptr);

  if (R > 1) gather.wait();
  decayed_sum(s, gamma, states.data(), 0, r, r - 1, prefix);
  // Rank 0's prefix is exactly zero: skipping it keeps sp = 1 bit-identical to the plain op.
  if (r > 0) add_prefix_outputs(s, pw, q, prefix, o);
}

template <class S>
void lasp2_backward(Comm& sp, const LinearAttentionShape& s, const S* q_in, const S* k_in,
                    const S* v_in, const float* gamma, const float* prefix, const float* dout,
                    float* dq, float* dk, float* dv) {
  ProfScope prof_scope(ProfOp::attention);
  check_linear(sp, s);
  const int64_t R = sp.size(), r = sp.rank(), per = s.B * s.H * s.dh * s.dh;
  const int64_t n = R > 1 ? s.B * s.T * s.H * s.dh : 0;
  FloatBuffer q_tmp, k_tmp, v_tmp;
  const float* q = cross_rank_values(q_in, n, q_tmp);
  const float* k = cross_rank_values(k_in, n, k_tmp);
  const float* v = cross_rank_values(v_in, n, v_tmp);
  const std::vector<float> pw = decay_table(gamma, s.H, s.T);

  // [sp][B, H, dh, dh] dP of each rank, read by the earlier ranks (none when alone).
  FloatBuffer grads = FloatBuffer::uninitialised(R > 1 ? R * per : 0, MemCategory::comm);
  CommHandle gather;
  if (R > 1) {
    prefix_grads(s, pw, q, dout, grads.data() + r * per);
    gather = sp.iall_gather(grads.data() + r * per, grads.data(), per);
  }

  // Overlapped with the gather: the chunk's own backward, as if it started from a zero state
  // and no later rank read its state.
  strata::linear_attention_backward(s, q_in, k_in, v_in, gamma, dout, dq, dk, dv, nullptr, nullptr,
                                    nullptr);

  if (R > 1) gather.wait();
  if (r > 0) add_prefix_query_grads(s, pw, dout, prefix, dq);
  if (r + 1 < R) {
    FloatBuffer suffix(per, MemCategory::activations);  // [B, H, dh, dh] dL/dM_r
    decayed_sum(s, gamma, grads.data(), r + 1, R, r + 1, suffix.data());
    add_suffix_kv_grads(s, pw, k, v, suffix.data(), dk, dv);
  }
}

}  // namespace

void linear_attention_forward(Comm& sp, const LinearAttentionShape& s, const float* q,
                              const float* k, const float* v, const float* gamma, float* o,
                              float* prefix) {
  lasp2_forward(sp, s, q, k, v, gamma, o, prefix);
}

void linear_attention_forward(Comm& sp, const LinearAttentionShape& s, const bf16* q, const bf16* k,
                              const bf16* v, const float* gamma, float* o, float* prefix) {
  lasp2_forward(sp, s, q, k, v, gamma, o, prefix);
}

void linear_attention_backward(Comm& sp, const LinearAttentionShape& s, const float* q,
                               const float* k, const float* v, const float* gamma,
                               const float* prefix, const float* dout, float* dq, float* dk,
                               float* dv) {
  lasp2_backward(sp, s, q, k, v, gamma, prefix, dout, dq, dk, dv);
}

void linear_attention_backward(Comm& sp, const LinearAttentionShape& s, const bf16* q,
                               const bf16* k, const bf16* v, const float* gamma,
                               const float* prefix, const float* dout, float* dq, float* dk,
                               float* dv) {
  lasp2_backward(sp, s, q, k, v, gamma, prefix, dout, dq, dk, dv);
}

namespace {

// Both storage types (float: the fp32 kernel; bf16: the bf16 precision's, on its operands).
// kernel(shape, q, k_all, v_all, o, lse).
template <class S, class Kernel>
void lasp2h_forward(Comm& sp, int64_t B, int64_t n, int64_t H, int64_t Hkv, int64_t dh, const S* q,
                    const S* k, const S* v, S* k_all, S* v_all, S* o, float* lse,
                    const Kernel& kernel) {
  ProfScope prof_scope(ProfOp::attention);
  STRATA_CHECK(B >= 0 && n >= 1 && dh >= 1, "bad LASP-2H shape on " + sp.describe());
  const int64_t R = sp.size(), r = sp.rank(), chunk = B * n * Hkv * dh;
  if (R == 1) {  // alone: the whole sequence's keys and values are this rank's
    copy_threaded(k, chunk, k_all);
    copy_threaded(v, chunk, v_all);
    const SoftmaxAttentionShape shape{B, n, n, H, Hkv, dh, 0, 0};
    return kernel(shape, q, k_all, v_all, o, lse);
  }

  // One all-gather of K and V together (one latency instead of two), in place, moving them as
  // stored (bf16: half the bytes): [sp][2][B, n, Hkv, dh] of S, 2 * chunk S a whole number of
  // floats either way.
  const int64_t words = 2 * chunk * static_cast<int64_t>(sizeof(S)) / 4;
  FloatBuffer blocks = FloatBuffer::uninitialised(R * words, MemCategory::comm);
  S* blk = reinterpret_cast<S*>(blocks.data());
  pack_kv(k, v, chunk, blk + r * 2 * chunk);
  sp.all_gather(blocks.data() + r * words, blocks.data(), words);
  rearrange_kv(blk, k_all, v_all, R, B, n, Hkv * dh, true);
  blocks.reset();

  // Local queries at global positions [r*n, (r+1)*n) against every key; the kernel skips the
  // keys past each query tile's causal horizon, so later ranks' keys cost nothing.
  const SoftmaxAttentionShape shape{B, n, R * n, H, Hkv, dh, r * n, 0};
  kernel(shape, q, k_all, v_all, o, lse);
}

}  // namespace

void softmax_attention_forward(Comm& sp, int64_t B, int64_t n, int64_t H, int64_t Hkv, int64_t dh,
                               const float* q, const float* k, const float* v, float* k_all,
                               float* v_all, float* o, float* lse) {
  lasp2h_forward(sp, B, n, H, Hkv, dh, q, k, v, k_all, v_all, o, lse,
                 strata::softmax_attention_forward<float>);
}

void softmax_attention_forward(Comm& sp, int64_t B, int64_t n, int64_t H, int64_t Hkv, int64_t dh,
                               const bf16* q, const bf16* k, const bf16* v, bf16* k_all,
                               bf16* v_all, bf16* o, float* lse) {
  const auto kernel = [](const SoftmaxAttentionShape& s, const bf16* q, const bf16* k,
                         const bf16* v, bf16* o,
                         float* lse) { softmax_attention_forward_bf16(s, q, k, v, o, lse); };
  lasp2h_forward(sp, B, n, H, Hkv, dh, q, k, v, k_all, v_all, o, lse, kernel);
}

namespace {

// Both storage types of q, k_all, v_all, o (float, or the bf16 precision's saved operands).
template <class S>
void lasp2h_backward(Comm& sp, int64_t B, int64_t n, int64_t H, int64_t Hkv, int64_t dh, const S* q,
                     const S* k_all, const S* v_all, const S* o, const float* lse,
                     const float* dout, float* dq, float* dk, float* dv) {
  ProfScope prof_scope(ProfOp::attention);
  STRATA_CHECK(B >= 0 && n >= 1 && dh >= 1, "bad LASP-2H shape on " + sp.describe());
  const int64_t R = sp.size(), r = sp.rank(), chunk = B * n * Hkv * dh;
  if (R == 1) {  // alone: the kernel's dK, dV of the whole sequence are this rank's, as they are
    const SoftmaxAttentionShape shape{B, n, n, H, Hkv, dh, 0, 0};
    return strata::softmax_attention_backward(shape, q, k_all, v_all, o, lse, dout, dq, dk, dv);
  }

  // [B, sp*n, Hkv, dh] each, overwritten by the kernel
  FloatBuffer dk_all = FloatBuffer::uninitialised(R * chunk, MemCategory::activations);
  FloatBuffer dv_all = FloatBuffer::uninitialised(R * chunk, MemCategory::activations);
  const SoftmaxAttentionShape shape{B, n, R * n, H, Hkv, dh, r * n, 0};
  strata::softmax_attention_backward(shape, q, k_all, v_all, o, lse, dout, dq, dk_all.data(),
                                     dv_all.data());

  // Every rank holds a partial dK, dV of the whole sequence; the sum over ranks of the rows
  // [s*n, (s+1)*n) is rank s's gradient: one reduce-scatter of dK and dV together.
  // [sp][2][B, n, Hkv, dh]
  FloatBuffer blocks = FloatBuffer::uninitialised(R * 2 * chunk, MemCategory::comm);
  rearrange_kv(blocks.data(), dk_all.data(), dv_all.data(), R, B, n, Hkv * dh, false);
  dk_all.reset();
  dv_all.reset();
  FloatBuffer mine = FloatBuffer::uninitialised(2 * chunk, MemCategory::comm);  // [2][B,n,Hkv,dh]
  sp.reduce_scatter_sum(blocks.data(), mine.data(), 2 * chunk);
  std::copy(mine.data(), mine.data() + chunk, dk);
  std::copy(mine.data() + chunk, mine.data() + 2 * chunk, dv);
}

}  // namespace

void softmax_attention_backward(Comm& sp, int64_t B, int64_t n, int64_t H, int64_t Hkv, int64_t dh,
                                const float* q, const float* k_all, const float* v_all,
                                const float* o, const float* lse, const float* dout, float* dq,
                                float* dk, float* dv) {
  lasp2h_backward(sp, B, n, H, Hkv, dh, q, k_all, v_all, o, lse, dout, dq, dk, dv);
}

void softmax_attention_backward(Comm& sp, int64_t B, int64_t n, int64_t H, int64_t Hkv, int64_t dh,
                                const bf16* q, const bf16* k_all, const bf16* v_all, const bf16* o,
                                const float* lse, const float* dout, float* dq, float* dk,
                                float* dv) {
  lasp2h_backward(sp, B, n, H, Hkv, dh, q, k_all, v_all, o, lse, dout, dq, dk, dv);
}

}  // namespace strata::sequence
