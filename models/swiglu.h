#pragma once
// The SwiGLU gate: act = SiLU(gate) * up (the projections around it are GEMMs in the block).
#include <cstdint>

#include "core/bf16.h"

namespace strata {

// gate, up, act: [n]
template <class T>
void swiglu_forward(const T* gate, const T* up, T* act, int64_t n);
// dact: [n] -> dgate, dup: [n] (overwritten; they may be gate, up or dact themselves)
template <class T>
void swiglu_backward(const T* gate, const T* up, const T* dact, T* dgate, T* dup, int64_t n);

// The feature map of linear attention, element-wise: y = scale * phi(x), phi = SiLU or identity.
template <class T>
void feature_map_forward(const T* x, T* y, int64_t n, bool silu, T scale);
// dx = scale * phi'(x) * dy   (overwritten)
template <class T>
void feature_map_backward(const T* x, const T* dy, T* dx, int64_t n, bool silu, T scale);

// The bf16 precision's forms: inputs stored in bf16 (loaded exactly), fp32 arithmetic, outputs
// in bf16 where they only feed GEMMs (act, dgate, dup: rounded once as they are stored) and in
// fp32 otherwise. The same in-place rules.
void swiglu_forward(const bf16* gate, const bf16* up, bf16* act, int64_t n);
void swiglu_backward(const bf16* gate, const bf16* up, const float* dact, bf16* dgate, bf16* dup,
                     int64_t n);
// q and k only feed the linear-attention kernel's bf16 products: stored rounded, as it packs them.
// Their gradients dq, dk only feed the q/k projections' bf16 GEMMs: dx is that operand, the fp32
// product rounded once as it is stored.
void feature_map_forward(const bf16* x, bf16* y, int64_t n, bool silu, float scale);
void feature_map_backward(const bf16* x, const float* dy, bf16* dx, int64_t n, bool silu,
                          float scale);

}  // namespace strata
