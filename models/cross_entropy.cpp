#include "models/cross_entropy.h"

#include <cmath>
#include <vector>

namespace strata {

template <class T>
double cross_entropy_forward_backward(const T* logits, const int32_t* targets, T* dlogits,
                                      int64_t N, int64_t V, T scale) {
  std::vector<double> row_loss(static_cast<size_t>(N), 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* lr = logits + n * V;
    const int32_t y = targets[n];
    if (y < 0) {
      if (dlogits)
        for (int64_t j = 0; j < V; ++j) dlogits[n * V + j] = T(0);
      continue;
    }
    T mx = lr[0];
    for (int64_t j = 1; j < V; ++j) mx = lr[j] > mx ? lr[j] : mx;
    double sum = 0;
    for (int64_t j = 0; j < V; ++j) sum += std::exp(double(lr[j] - mx));
    const double lse = double(mx) + std::log(sum);
    row_loss[n] = lse - double(lr[y]);
    if (dlogits) {
      T* dr = dlogits + n * V;
      for (int64_t j = 0; j < V; ++j) dr[j] = scale * T(std::exp(double(lr[j]) - lse));
      dr[y] -= scale;
    }
  }
  double total = 0;  // fixed order: deterministic
  for (int64_t n = 0; n < N; ++n) total += row_loss[n];
  return total;
}

template double cross_entropy_forward_backward<float>(const float*, const int32_t*, float*, int64_t,
                                                      int64_t, float);
template double cross_entropy_forward_backward<double>(const double*, const int32_t*, double*,
                                                       int64_t, int64_t, double);

}  // namespace strata
