#include "core/vexp.h"

#include <algorithm>
#include <limits>

namespace strata {

float max_of(const float* x, int64_t n) {
  float mx = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
#ifdef __AVX512F__
  // vmaxps returns its second operand when either is a NaN, so a NaN x[i] leaves the running
  // maximum as std::max(mx, x[i]) does; the maximum of the rest does not depend on the order.
  __m512 m = _mm512_set1_ps(mx);
  for (; i + 16 <= n; i += 16) m = _mm512_maskz_max_ps(kAll16, _mm512_loadu_ps(x + i), m);
  // The 16 lanes through memory: GCC 12's _mm512_reduce_max_ps trips -Wuninitialized.
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, m);
  for (float l : lanes) mx = std::max(mx, l);
#elif defined(STRATA_VEC16)
  // AVX2's vmaxps returns its second operand on a NaN too (core/vec16_avx2.h).
  __m256 m = _mm256_set1_ps(mx);
  for (; i + 8 <= n; i += 8) m = _mm256_max_ps(_mm256_loadu_ps(x + i), m);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m);
  for (float l : lanes) mx = std::max(mx, l);
#endif
  for (; i < n; ++i) mx = std::max(mx, x[i]);
  return mx;
}

double exp_shift_sum(const float* x, float* y, int64_t n, float shift) {
  double acc[16] = {};
  int64_t i = 0;
#ifdef __AVX512F__
  // Lanes 0-7 and 8-15 of each vector widened to double: lane j holds sum j of the scalar path.
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  for (; i + 16 <= n; i += 16) {
    const Vec16 e = exp_v(vload(x + i, Vec16{}) - Vec16(shift));
    vstore(y + i, e);
    // The halves read back from y (L1): GCC 12's extract intrinsics trip -Wmaybe-uninitialized;
    // the zero-masking cvtps_pd with an all-ones mask is the plain instruction (see kAll16).
    lo = _mm512_add_pd(lo, _mm512_maskz_cvtps_pd(0xFF, _mm256_loadu_ps(y + i)));
    hi = _mm512_add_pd(hi, _mm512_maskz_cvtps_pd(0xFF, _mm256_loadu_ps(y + i + 8)));
  }
  _mm512_storeu_pd(acc, lo);
  _mm512_storeu_pd(acc + 8, hi);
#elif defined(STRATA_VEC16)
  // Four quarters of each 16 widened to double: lane j of sums[j / 4] holds sum j.
  __m256d sums[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                     _mm256_setzero_pd()};
  for (; i + 16 <= n; i += 16) {
    const Vec16 e = exp_v(vload(x + i, Vec16{}) - Vec16(shift));
    vstore(y + i, e);
    for (int q = 0; q < 4; ++q)
      sums[q] = _mm256_add_pd(sums[q], _mm256_cvtps_pd(_mm_loadu_ps(y + i + 4 * q)));
  }
  for (int q = 0; q < 4; ++q) _mm256_storeu_pd(acc + 4 * q, sums[q]);
#endif
  for (; i < n; ++i) {
    y[i] = exp_f32(x[i] - shift);
    acc[i % 16] += y[i];
  }
  double sum = 0;
  for (double a : acc) sum += a;
  return sum;
}

void exp_shift_scale(float* x, int64_t n, float shift, float scale) {
  for_lanes(0, n, [&](auto lane, int64_t i) {
    using V = decltype(lane);
    vstore(x + i, V(scale) * exp_v(vload(x + i, lane) - V(shift)));
  });
}

}  // namespace strata
