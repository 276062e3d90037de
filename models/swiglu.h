#pragma once
// The SwiGLU gate: act = SiLU(gate) * up (the projections around it are GEMMs in the block).
#include <cstdint>

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

}  // namespace strata
