#pragma once
// The linear-attention core of MODEL.md ("L" layers): per (batch, head) the decayed recurrence
//   S_t = γ S_{t-1} + k_tᵀ v_t      (dh×dh state, S_{-1} = state_in or 0)
//   o_t = q_t S_t                   (= Σ_{s<=t} γ^(t-s) (q_t·k_s) v_s)
// computed in chunks of `chunk` tokens: a masked intra-chunk product plus the inter-chunk state,
// each a batched GEMM over every chunk of every (sequence, head) at once (core/head_chunks.h);
// only the scan of the dh×dh states from chunk to chunk runs in order.
// This is a pure op on raw arrays; the projections, the feature map φ, the 1/sqrt(dh) key scale,
// the per-head output RMSNorm and g_out belong to the caller. state_in/state_out are the hooks
// LASP-2 uses to chain chunks held by different sequence-parallel ranks.
//
// All activations use the layout of a projection output [B*T, H*dh]: q, k, v, o are
// [B, T, H, dh] row-major. States are [B, H, dh, dh] (row index = key dim, column = value dim).
// Float and double are instantiated; double exists so gradient checks can be exact. The optional
// (nullable) state arguments are non-deduced (std::type_identity_t) so a bare nullptr works.
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/bf16.h"
#include "core/precision.h"

namespace strata {

struct LinearAttentionShape {
  int64_t B, T, H, dh;
  int64_t chunk;  // chunk length C >= 1; T need not be a multiple of it
  // The operands of the kernel's products (float only): bf16 rounds q, k, v, the scores and the
  // states to bf16 as they enter a product, and accumulates, scans and returns in fp32.
  Precision precision = Precision::fp32;
};

// Per-head decay γ_h: 1 - 2^(-5-h) for retnet, 1 for none. [H]
std::vector<float> linear_attention_gammas(int64_t H, bool retnet);

// o: [B,T,H,dh] (overwritten). state_in: [B,H,dh,dh] initial state or nullptr (= zeros).
// state_out: [B,H,dh,dh] final state S_{T-1}, or nullptr when not wanted.
template <class T>
void linear_attention_forward(const LinearAttentionShape& s, const T* q, const T* k, const T* v,
                              const T* gamma, T* o, const std::type_identity_t<T>* state_in,
                              std::type_identity_t<T>* state_out);

// dq, dk, dv: [B,T,H,dh], overwritten. dstate_out: gradient w.r.t. the final state (or nullptr
// = zero). dstate_in: [B,H,dh,dh] gradient w.r.t. state_in, overwritten (or nullptr). The chunk
// states are recomputed from q-independent inputs (k, v, state_in), so nothing but the inputs
// needs to be saved by the forward.
template <class T>
void linear_attention_backward(const LinearAttentionShape& s, const T* q, const T* k, const T* v,
                               const T* gamma, const T* dout, T* dq, T* dk, T* dv,
                               const std::type_identity_t<T>* state_in,
                               const std::type_identity_t<T>* dstate_out,
                               std::type_identity_t<T>* dstate_in);

// The same with q, k, v stored in bf16 (s.precision bf16): the operands the bf16 precision's
// products take, packed as they are. The result is the float op's on their values, bit for bit.
void linear_attention_forward(const LinearAttentionShape& s, const bf16* q, const bf16* k,
                              const bf16* v, const float* gamma, float* o, const float* state_in,
                              float* state_out);
void linear_attention_backward(const LinearAttentionShape& s, const bf16* q, const bf16* k,
                               const bf16* v, const float* gamma, const float* dout, float* dq,
                               float* dk, float* dv, const float* state_in, const float* dstate_out,
                               float* dstate_in);

// The plain token-by-token recurrence (s.chunk is ignored); the ground truth for tests.
template <class T>
void linear_attention_reference(const LinearAttentionShape& s, const T* q, const T* k, const T* v,
                                const T* gamma, T* o, const std::type_identity_t<T>* state_in,
                                std::type_identity_t<T>* state_out);

}  // namespace strata
