#include "core/peak.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "core/error.h"
#include "core/gemm.h"

namespace strata {

double measure_sgemm_peak_gflops(int64_t n, int reps) {
  STRATA_CHECK(n > 0 && reps > 0, "sgemm peak needs n > 0 and reps > 0");
  // Plain vectors, not FloatBuffers: this scratch is freed before training and must not show up
  // in the run's accounted peak memory.
  const size_t elems = static_cast<size_t>(n * n);
  std::vector<float> a(elems), b(elems), c(elems);
  // Small, non-denormal values: denormals would slow the kernel and understate the peak.
  for (size_t i = 0; i < elems; ++i) {
    a[i] = 0.5f + static_cast<float>(i % 7) * 0.125f;
    b[i] = 0.25f + static_cast<float>(i % 5) * 0.0625f;
  }
  auto run = [&] { sgemm(false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n); };
  run();  // warm-up: thread pool start, kernel JIT, page faults on c
  double best = 0.0;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    const auto t1 = std::chrono::steady_clock::now();
    const double s = std::chrono::duration<double>(t1 - t0).count();
    if (s > 0) best = std::max(best, 2.0 * static_cast<double>(n) * n * n / s * 1e-9);
  }
  return best;
}

double cached_sgemm_peak_gflops() {
  static const double peak = measure_sgemm_peak_gflops(2048, 5);  // thread-safe, once
  return peak;
}

}  // namespace strata
