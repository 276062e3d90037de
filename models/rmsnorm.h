#pragma once
// RMSNorm over rows: y[n,:] = x[n,:] / sqrt(mean_j x[n,j]^2 + eps) * g   (g = nullptr: gain 1).
#include <cstdint>

namespace strata {

// x, y: [N, D]; inv_rms: [N] saved for backward; g: [D] or nullptr.
template <class T>
void rmsnorm_forward(const T* x, const T* g, T* y, T* inv_rms, int64_t N, int64_t D, float eps);

// dy: [N, D] -> dx: [N, D] (overwritten); dg: [D] accumulated (+=) when g != nullptr.
// y = x * inv_rms (* g): the forward's output again, bit for bit, from its saved statistics (a
// backward that did not keep y).
template <class T>
void rmsnorm_apply(const T* x, const T* g, const T* inv_rms, T* y, int64_t N, int64_t D);

template <class T>
void rmsnorm_backward(const T* x, const T* g, const T* inv_rms, const T* dy, T* dx, T* dg,
                      int64_t N, int64_t D);

}  // namespace strata
