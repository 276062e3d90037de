#pragma once
// Sequence parallelism for the two attention kinds of MODEL.md (Sun et al. 2025, "LASP-2:
// Rethinking Sequence Parallelism for Linear Attention and Its Hybrid", Algorithms 2 and 4).
//
// Layout: the sp ranks split every sequence into equal contiguous chunks of n tokens; rank r
// holds global positions [r*n, (r+1)*n) of each of the B sequences. Activations are the
// projection layout of the core ops ([B, n, heads, dh] row-major, this rank's chunk only).
//
// LASP-2 (linear attention). By linearity the output of rank r's chunk is the plain op on the
// chunk from a zero state plus the contribution of the state entering it:
//   o_j = o_j^local + γ^(j+1) q_j P_r,     P_r = Σ_{s<r} γ^(n(r-1-s)) M_s,
//   M_s = Σ_j γ^(n-1-j) k_jᵀ v_j  (chunk s's state from zero; j local to chunk s).
// So each rank computes its M, posts ONE all-gather of it and runs the local chunked op while it
// is in flight; afterwards it folds the earlier ranks' states into P_r (in a fixed order, so the
// result is deterministic) and adds the correction. The backward mirrors this with the gradient
// w.r.t. each rank's prefix, dP_r = Σ_j γ^(j+1) q_jᵀ dO_j, gathered once while the local
// backward runs; the suffix D_r = Σ_{s>r} γ^(n(s-1-r)) dP_s is the gradient w.r.t. M_r. One
// fp32 all-gather of [B, H, dh, dh] per rank per direction: the volume does not depend on n.
//
// LASP-2H (softmax attention). One all-gather of this rank's K and V gives every rank the whole
// sequence's keys; the core kernel then runs the local queries against them with the global
// causal mask (q_pos0 = r*n), which already skips keys past each query tile's horizon. The
// backward's full-length dK, dV are reduce-scattered (summed) back to the ranks owning the keys.
//
// Every rank of `sp` calls each op in the same order (they are collectives). With sp.size() == 1
// each op computes exactly (bit for bit) the plain single-rank core op.
#include <cstdint>

#include "core/bf16.h"
#include "core/linear_attention.h"
#include "core/precision.h"
#include "parallel/comm.h"

namespace strata::sequence {

// LASP-2 forward. s.T = n (local chunk length), s.chunk the core op's tile.
// q, k, v, o: [B, n, H, dh] (o overwritten); gamma: [H] per-head decay (1 = none).
// prefix: [B, H, dh, dh] out: P_r, the state entering this rank's chunk; the caller saves it for
// the backward (it replaces re-gathering the states there).
void linear_attention_forward(Comm& sp, const LinearAttentionShape& s, const float* q,
                              const float* k, const float* v, const float* gamma, float* o,
                              float* prefix);

// LASP-2 backward. prefix: [B, H, dh, dh] as returned by the forward. dout: [B, n, H, dh].
// dq, dk, dv: [B, n, H, dh], overwritten with the full gradients of this rank's chunk (including
// what the later ranks' outputs contribute to this chunk's keys and values).
void linear_attention_backward(Comm& sp, const LinearAttentionShape& s, const float* q,
                               const float* k, const float* v, const float* gamma,
                               const float* prefix, const float* dout, float* dq, float* dk,
                               float* dv);

// The same on q, k, v stored in bf16 (s.precision bf16): the kernel packs them as they are, and
// only with a second rank are fp32 copies made, for the cross-rank products.
void linear_attention_forward(Comm& sp, const LinearAttentionShape& s, const bf16* q, const bf16* k,
                              const bf16* v, const float* gamma, float* o, float* prefix);
void linear_attention_backward(Comm& sp, const LinearAttentionShape& s, const bf16* q,
                               const bf16* k, const bf16* v, const float* gamma,
                               const float* prefix, const float* dout, float* dq, float* dk,
                               float* dv);

// LASP-2H forward. q: [B, n, H, dh]; k, v: [B, n, Hkv, dh], this rank's chunk with RoPE already
// applied at global positions. k_all, v_all: [B, sp*n, Hkv, dh] out: the whole sequence's keys
// and values, saved by the caller for the backward. o: [B, n, H, dh]; lse: [B, H, n].
void softmax_attention_forward(Comm& sp, int64_t B, int64_t n, int64_t H, int64_t Hkv, int64_t dh,
                               const float* q, const float* k, const float* v, float* k_all,
                               float* v_all, float* o, float* lse);
// The bf16 precision's: q, k, v, k_all, v_all and o in bf16 as it saves them (the gather moves
// bf16), the kernel's products in bf16 (core/softmax_attention.h's softmax_attention_forward_bf16),
// the pair of the bf16 backward.
void softmax_attention_forward(Comm& sp, int64_t B, int64_t n, int64_t H, int64_t Hkv, int64_t dh,
                               const bf16* q, const bf16* k, const bf16* v, bf16* k_all,
                               bf16* v_all, bf16* o, float* lse);

// LASP-2H backward. q, o, dout: [B, n, H, dh]; k_all, v_all: [B, sp*n, Hkv, dh] and lse:
// [B, H, n] from the forward. dq: [B, n, H, dh]; dk, dv: [B, n, Hkv, dh] this rank's chunk
// (overwritten): every rank's contribution to these keys and values, summed over sp.
void softmax_attention_backward(Comm& sp, int64_t B, int64_t n, int64_t H, int64_t Hkv, int64_t dh,
                                const float* q, const float* k_all, const float* v_all,
                                const float* o, const float* lse, const float* dout, float* dq,
                                float* dk, float* dv);
// The same on q, k_all, v_all and o saved in bf16 (core/softmax_attention.h's bf16 backward).
void softmax_attention_backward(Comm& sp, int64_t B, int64_t n, int64_t H, int64_t Hkv, int64_t dh,
                                const bf16* q, const bf16* k_all, const bf16* v_all, const bf16* o,
                                const float* lse, const float* dout, float* dq, float* dk,
                                float* dv);

}  // namespace strata::sequence
