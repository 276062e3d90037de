#include "optim/grad_norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/lane_sum.h"

namespace strata {

namespace {
// Block size of the deterministic reduction: fixed, so partial sums do not depend on threads.
constexpr int64_t kBlock = 1 << 14;
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

double sum_of_squares(const float* g, int64_t n) {
  if (n <= 0) return 0.0;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(blocks));
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * kBlock;
    const int64_t end = std::min(n, begin + kBlock);
    // The order is fixed by the code, from the block start (core/lane_sum.h).
    const double acc = lane_sum(end - begin, [&](int64_t i) {
      const double x = g[begin + i];
      return x * x;
    });
    partial[static_cast<size_t>(b)] = acc;
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

void scale(float* g, int64_t n, float s) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) g[i] *= s;
}

float clip_coefficient(double global_sq_sum, float max_norm) {
  if (max_norm <= 0.f) return 1.f;
  const double coef = static_cast<double>(max_norm) / (std::sqrt(global_sq_sum) + 1e-6);
  // A NaN norm gives a NaN coefficient (as torch's clamp does), so a broken step stays visible.
  return static_cast<float>(std::isnan(coef) || coef < 1.0 ? coef : 1.0);
}

}  // namespace strata
