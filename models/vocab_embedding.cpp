#include "models/vocab_embedding.h"

#include <cstring>

namespace strata {

template <class T>
void vocab_embedding_forward(const T* E_shard, int64_t row0, int64_t rows, const int32_t* tokens,
                             T* h, int64_t N, int64_t D) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const int64_t r = static_cast<int64_t>(tokens[n]) - row0;
    if (r >= 0 && r < rows)
      std::memcpy(h + n * D, E_shard + r * D, sizeof(T) * D);
    else
      for (int64_t j = 0; j < D; ++j) h[n * D + j] = T(0);
  }
}

template <class T>
void vocab_embedding_backward(const int32_t* tokens, const T* dh, T* dE_shard, int64_t row0,
                              int64_t rows, int64_t N, int64_t D) {
  // As embedding_backward: columns split across threads, tokens in order, so a row hit by
  // several tokens sums them in the same order for any thread count.
  constexpr int64_t kCols = 64;
#pragma omp parallel for schedule(static)
  for (int64_t j0 = 0; j0 < D; j0 += kCols) {
    const int64_t j1 = j0 + kCols < D ? j0 + kCols : D;
    for (int64_t n = 0; n < N; ++n) {
      const int64_t r = static_cast<int64_t>(tokens[n]) - row0;
      if (r < 0 || r >= rows) continue;
      T* row = dE_shard + r * D;
      for (int64_t j = j0; j < j1; ++j) row[j] += dh[n * D + j];
    }
  }
}

template void vocab_embedding_forward<float>(const float*, int64_t, int64_t, const int32_t*, float*,
                                             int64_t, int64_t);
template void vocab_embedding_forward<double>(const double*, int64_t, int64_t, const int32_t*,
                                              double*, int64_t, int64_t);
template void vocab_embedding_backward<float>(const int32_t*, const float*, float*, int64_t,
                                              int64_t, int64_t, int64_t);
template void vocab_embedding_backward<double>(const int32_t*, const double*, double*, int64_t,
                                               int64_t, int64_t, int64_t);

}  // namespace strata
