#pragma once
// The softmax-attention core of MODEL.md ("S" layers): causal, grouped-query, scale 1/sqrt(dh),
//   o[h] = softmax(q[h] k[g(h)]ᵀ / sqrt(dh) + causal_mask) v[g(h)],   g(h) = h / (H / Hkv).
// A pure op on raw arrays: projections and RoPE belong to the caller.
//
// The mask is by GLOBAL position: query i sits at q_pos0 + i, key j at k_pos0 + j, and key j is
// visible to query i iff k_pos0 + j <= q_pos0 + i. A single process uses q_pos0 = k_pos0 = 0
// and Tq == Tk; sequence parallelism passes its local chunk of queries (q_pos0 = its offset)
// against all-gathered keys (k_pos0 = 0). q_pos0 >= k_pos0 is required, so every query sees at
// least key 0.
//
// Queries are processed in tiles of kSoftmaxQueryTile rows, so the score scratch is
// tile × Tk rather than Tq × Tk; the backward recomputes the probabilities from the saved
// log-sum-exp (flash-attention style). Float and double are instantiated; double exists so
// gradient checks can be exact.
#include <cstdint>

#include "core/bf16.h"

namespace strata {

struct SoftmaxAttentionShape {
  int64_t B, Tq, Tk, H, Hkv, dh;
  int64_t q_pos0, k_pos0;  // global position of query 0 / key 0
};

inline constexpr int64_t kSoftmaxQueryTile = 64;

// Throws StrataError unless the shape is one the kernels take (H a multiple of Hkv, and every
// query sees at least one key: q_pos0 >= k_pos0 and Tk >= 1).
void check_softmax_attention_shape(const SoftmaxAttentionShape& s);

// Keys a tile of m queries from i0 can see at all: key j is visible to the tile's last query iff
// k_pos0 + j <= q_pos0 + i0 + m - 1; keys past that are skipped (half the work when causal).
inline int64_t softmax_tile_keys(const SoftmaxAttentionShape& s, int64_t i0, int64_t m) {
  const int64_t n = s.q_pos0 + i0 + m - s.k_pos0;
  return n < s.Tk ? n : s.Tk;
}
// Last key query i sees (k_pos0 + j <= q_pos0 + i), clipped to a tile's nk keys.
inline int64_t softmax_last_key(const SoftmaxAttentionShape& s, int64_t i, int64_t nk) {
  const int64_t j = s.q_pos0 + i - s.k_pos0;
  return j < nk - 1 ? j : nk - 1;
}

// q: [B,Tq,H,dh]; k, v: [B,Tk,Hkv,dh]; o: [B,Tq,H,dh] (overwritten);
// lse: [B,H,Tq] log Σ_j exp(score_ij) over visible keys, saved for the backward.
template <class T>
void softmax_attention_forward(const SoftmaxAttentionShape& s, const T* q, const T* k, const T* v,
                               T* o, T* lse);

// dout: [B,Tq,H,dh]. dq: [B,Tq,H,dh]; dk, dv: [B,Tk,Hkv,dh]; all overwritten (the heads that
// share a kv head sum into it).
template <class T>
void softmax_attention_backward(const SoftmaxAttentionShape& s, const T* q, const T* k, const T* v,
                                const T* o, const T* lse, const T* dout, T* dq, T* dk, T* dv);
// The bf16 precision's pair (core/softmax_attention_bf16.cpp): the same op with its products on
// bf16 operands and fp32 accumulation, batched over the heads (AMX through oneDNN here). q, k, v
// hold bf16 values (the forward rounds any other value to bf16 as it reads it); S, the softmax,
// lse and every sum stay fp32, while P, dout and dS are rounded to bf16 for the products that
// read them. The backward takes q, k, v, o as the precision saves them (bf16) and recomputes the
// forward's P bit for bit. Deterministic for a fixed shape and thread count.
void softmax_attention_forward_bf16(const SoftmaxAttentionShape& s, const float* q, const float* k,
                                    const float* v, float* o, float* lse);
// The same on q, k, v stored in bf16 (as the bf16 precision saves them), o written in bf16 (its
// fp32 value rounded once): bit for bit the float overload's o, rounded, on those values.
void softmax_attention_forward_bf16(const SoftmaxAttentionShape& s, const bf16* q, const bf16* k,
                                    const bf16* v, bf16* o, float* lse);
void softmax_attention_backward(const SoftmaxAttentionShape& s, const bf16* q, const bf16* k,
                                const bf16* v, const bf16* o, const float* lse, const float* dout,
                                float* dq, float* dk, float* dv);
// Floats of the one activations buffer either of that pair allocates while it runs (its packed
// operands and one query block's scores), for the memory plan.
int64_t softmax_attention_bf16_workspace_floats(const SoftmaxAttentionShape& s, bool backward);

}  // namespace strata
