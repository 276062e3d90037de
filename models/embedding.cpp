#include "models/embedding.h"

#include <cstring>

namespace strata {

template <class T>
void embedding_forward(const T* E, const int32_t* tokens, T* h, int64_t N, int64_t D) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    std::memcpy(h + n * D, E + static_cast<int64_t>(tokens[n]) * D, sizeof(T) * D);
}

template <class T>
void embedding_backward(const int32_t* tokens, const T* dh, T* dE, int64_t N, int64_t D) {
  // Columns split across threads, tokens in order: the same sum order for any thread count.
  constexpr int64_t kCols = 64;
#pragma omp parallel for schedule(static)
  for (int64_t j0 = 0; j0 < D; j0 += kCols) {
    const int64_t j1 = j0 + kCols < D ? j0 + kCols : D;
    for (int64_t n = 0; n < N; ++n) {
      T* row = dE + static_cast<int64_t>(tokens[n]) * D;
      for (int64_t j = j0; j < j1; ++j) row[j] += dh[n * D + j];
    }
  }
}

template void embedding_forward<float>(const float*, const int32_t*, float*, int64_t, int64_t);
template void embedding_forward<double>(const double*, const int32_t*, double*, int64_t, int64_t);
template void embedding_backward<float>(const int32_t*, const float*, float*, int64_t, int64_t);
template void embedding_backward<double>(const int32_t*, const double*, double*, int64_t, int64_t);

}  // namespace strata
