#include "core/peak.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "core/error.h"
#include "core/gemm.h"
#include "core/gemm_bf16.h"

namespace strata {

namespace {

// Best GFLOP/s of `run` (an n x n x n GEMM) over `reps` timed calls after one warm-up.
template <class Run>
double best_gflops(int64_t n, int reps, Run run) {
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

// Small, non-denormal values: denormals would slow the kernel and understate the peak.
std::vector<float> peak_operand(size_t elems, float base, float step, int period) {
  std::vector<float> v(elems);
  for (size_t i = 0; i < elems; ++i) v[i] = base + static_cast<float>(i % period) * step;
  return v;
}

}  // namespace

double measure_sgemm_peak_gflops(int64_t n, int reps) {
  STRATA_CHECK(n > 0 && reps > 0, "sgemm peak needs n > 0 and reps > 0");
  // Plain vectors, not FloatBuffers: this scratch is freed before training and must not show up
  // in the run's accounted peak memory.
  const size_t elems = static_cast<size_t>(n * n);
  const std::vector<float> a = peak_operand(elems, 0.5f, 0.125f, 7),
                           b = peak_operand(elems, 0.25f, 0.0625f, 5);
  std::vector<float> c(elems);
  return best_gflops(n, reps, [&] {
    sgemm(false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
  });
}

double measure_bf16_peak_gflops(int64_t n, int reps) {
  STRATA_CHECK(n > 0 && reps > 0, "bf16 peak needs n > 0 and reps > 0");
  const size_t elems = static_cast<size_t>(n * n);
  std::vector<bf16> a(elems), b(elems);
  to_bf16(peak_operand(elems, 0.5f, 0.125f, 7).data(), a.data(), n * n);
  to_bf16(peak_operand(elems, 0.25f, 0.0625f, 5).data(), b.data(), n * n);
  std::vector<float> c(elems);
  return best_gflops(n, reps, [&] {
    gemm_bf16(false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
  });
}

double cached_bf16_peak_gflops() {
  static const double peak = measure_bf16_peak_gflops(2048, 5);
  return peak;
}

double cached_sgemm_peak_gflops() {
  static const double peak = measure_sgemm_peak_gflops(2048, 5);  // thread-safe, once
  return peak;
}

}  // namespace strata
