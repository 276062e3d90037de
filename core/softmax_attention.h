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
// The same with q, k, v, o stored in bf16 (the precision's saved operands, holding exactly the
// values the forward computed with): each thread expands the rows it multiplies, so no fp32
// copy of the whole tensors is made; the result is that of the fp32 op on the expanded values.
void softmax_attention_backward(const SoftmaxAttentionShape& s, const bf16* q, const bf16* k,
                                const bf16* v, const bf16* o, const float* lse, const float* dout,
                                float* dq, float* dk, float* dv);

}  // namespace strata
