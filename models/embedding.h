#pragma once
// Token embedding: h[n,:] = E[tokens[n],:].
#include <cstdint>

namespace strata {

// E: [V, D], tokens: [N] (0 <= t < V), h: [N, D]
template <class T>
void embedding_forward(const T* E, const int32_t* tokens, T* h, int64_t N, int64_t D);
// dE[tokens[n],:] += dh[n,:]  (rows in token order: deterministic)
template <class T>
void embedding_backward(const int32_t* tokens, const T* dh, T* dE, int64_t N, int64_t D);

}  // namespace strata
