#pragma once
// A float exp that vectorises, for the element-wise ops of a step (SiLU, the loss softmax).
// glibc's expf has no SIMD variant without -ffast-math, so those loops called it once per
// element and spent most of a step's element-wise time there.
//
// One algorithm, written once on a "lane" type V: float (scalar) or, under AVX-512 or AVX2,
// Vec16 (16 floats). Every operation is IEEE-exact or correctly rounded in both (explicit fma,
// never a contracted a * b + c), so a vector lane and the scalar fallback give the same bits:
// results do not depend on the code path, the tail of an array, or the CPU's vector width.
//
// exp_v: clamp x to [-104, 88.8] (outside, the float result is 0 or inf anyway), n = rint(x
// log2 e), r = x - n ln2 (Cody-Waite, two fmas), exp(r) by Cephes' degree-7 polynomial on
// |r| <= ln2 / 2, then scale by 2^n with one rounding (subnormals and overflow correct). Within
// 1 ulp of the correctly rounded exp (tests/unit/test_vexp.cpp); NaN in, NaN out.
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/bf16.h"

// STRATA_VEC16: there is a 16-float lane type, Vec16: one AVX-512 register (below), or two AVX2
// ones (core/vec16_avx2.h, e.g. AMD's Zen 3 EPYC).
#if defined(__AVX512F__)
#include <immintrin.h>
#define STRATA_VEC16 1
#elif defined(__AVX2__) && defined(__FMA__)
#include "core/vec16_avx2.h"
#endif

namespace strata {

namespace vexp_detail {
constexpr float kLo = -104.f, kHi = 88.8f;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kP[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                         4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
}  // namespace vexp_detail

// ---- the scalar lane ----
inline float vfma(float a, float b, float c) { return std::fma(a, b, c); }
inline float vclamp(float x, float lo, float hi) {
  x = x < lo ? lo : x;
  return x > hi ? hi : x;
}
inline float vrint(float x) { return std::nearbyint(x); }  // round to nearest even
// y 2^n for y in [0.5, 2], n an integer in [-151, 129]: two exact power-of-two factors, so
// only the second multiply rounds (once, as AVX-512's scalef does).
inline float vscale2(float y, float n) {
  const int k = static_cast<int>(n), k1 = k / 2, k2 = k - k1;
  const float p1 = std::bit_cast<float>(static_cast<uint32_t>(k1 + 127) << 23);
  const float p2 = std::bit_cast<float>(static_cast<uint32_t>(k2 + 127) << 23);
  return (y * p1) * p2;
}
inline float vnan_pass(float x, float y) { return x != x ? x : y; }  // x if NaN, else y
// __builtin_sqrtf, not std::sqrt: <cmath>'s wrapper does not inline into a file that switches
// contraction off (optim/no_fp_contract.h). Correctly rounded, as the vector lanes' sqrt.
inline float vsqrt(float x) { return __builtin_sqrtf(x); }
// a + b where a is a product just formed: GCC contracts a * b + c into one FMA by default, which
// would round once where a separate add (another pass's) rounds twice. a goes through memory
// first (the scalar lane is only an array's tail).
inline float vadd_unfused(float a, float b) {
  volatile float rounded = a;
  return rounded + b;
}
inline float vload(const float* p, float) { return *p; }
inline void vstore(float* p, float v) { *p = v; }
// bf16 values load exactly and store rounded to nearest even (core/bf16.h), in both lanes.
inline float vload(const bf16* p, float) { return bf16_to_fp32(*p); }
inline void vstore(bf16* p, float v) { *p = fp32_to_bf16(v); }

#ifdef __AVX512F__
// ---- the 16-float lane ----
// The zero-masking forms with an all-ones mask are the plain instructions; GCC 12's plain
// intrinsics pass an "undefined" source that trips -Wmaybe-uninitialized.
constexpr __mmask16 kAll16 = 0xFFFF;
struct Vec16 {
  __m512 v;
  Vec16() = default;
  Vec16(__m512 x) : v(x) {}
  Vec16(float x) : v(_mm512_set1_ps(x)) {}
};
inline Vec16 operator+(Vec16 a, Vec16 b) { return _mm512_add_ps(a.v, b.v); }
inline Vec16 operator-(Vec16 a, Vec16 b) { return _mm512_sub_ps(a.v, b.v); }
inline Vec16 operator*(Vec16 a, Vec16 b) { return _mm512_mul_ps(a.v, b.v); }
inline Vec16 operator/(Vec16 a, Vec16 b) { return _mm512_div_ps(a.v, b.v); }
// A sign flip, as the scalar -x (0 - x would differ for -0 and a NaN's sign).
inline Vec16 operator-(Vec16 a) {
  return _mm512_castsi512_ps(
      _mm512_xor_si512(_mm512_castps_si512(a.v), _mm512_set1_epi32(INT32_MIN)));
}
inline Vec16 vfma(Vec16 a, Vec16 b, Vec16 c) { return _mm512_fmadd_ps(a.v, b.v, c.v); }
inline Vec16 vclamp(Vec16 x, float lo, float hi) {
  return _mm512_maskz_min_ps(kAll16, _mm512_maskz_max_ps(kAll16, x.v, _mm512_set1_ps(lo)),
                             _mm512_set1_ps(hi));
}
inline Vec16 vrint(Vec16 x) {
  return _mm512_maskz_roundscale_ps(kAll16, x.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
inline Vec16 vscale2(Vec16 y, Vec16 n) { return _mm512_maskz_scalef_ps(kAll16, y.v, n.v); }
inline Vec16 vsqrt(Vec16 x) { return _mm512_maskz_sqrt_ps(kAll16, x.v); }
// The explicit-rounding form is a builtin of its own, which GCC does not contract.
inline Vec16 vadd_unfused(Vec16 a, Vec16 b) {
  return _mm512_maskz_add_round_ps(kAll16, a.v, b.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
inline Vec16 vnan_pass(Vec16 x, Vec16 y) {
  return _mm512_mask_mov_ps(y.v, _mm512_cmp_ps_mask(x.v, x.v, _CMP_UNORD_Q), x.v);
}
inline Vec16 vload(const float* p, Vec16) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, Vec16 v) { _mm512_storeu_ps(p, v.v); }
inline Vec16 vload(const bf16* p, Vec16) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(
      _mm512_maskz_slli_epi32(kAll16, _mm512_maskz_cvtepu16_epi32(kAll16, h), 16));
}
// fp32_to_bf16 on 16 lanes: the same rounding (add 0x7FFF plus the lowest kept bit) and the
// same quiet NaN, so a vector lane and the scalar tail give the same bits.
inline void vstore_bf16_by_integers(bf16* p, Vec16 v) {
  const __m512i u = _mm512_castps_si512(v.v);
  const __m512i kept_lsb =
      _mm512_and_si512(_mm512_maskz_srli_epi32(kAll16, u, 16), _mm512_set1_epi32(1));
  const __m512i bias = _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), kept_lsb);
  __m512i r = _mm512_maskz_srli_epi32(kAll16, _mm512_add_epi32(u, bias), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF)),
                                                _mm512_set1_epi32(0x7F800000));
  r = _mm512_mask_or_epi32(r, nan, _mm512_maskz_srli_epi32(kAll16, u, 16), _mm512_set1_epi32(0x40));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_maskz_cvtepi32_epi16(kAll16, r));
}
// AVX512-BF16's vcvtneps2bf16 is that conversion in one instruction (nearest even, NaN truncated
// and made quiet), except that it flushes denormal inputs to a signed zero: a vector holding one
// takes the integer path, so every lane keeps fp32_to_bf16's bits.
inline void vstore(bf16* p, Vec16 v) {
#ifdef __AVX512BF16__
  constexpr int kDenormal = 0x20;  // vfpclassps category: denormal
  if (!_mm512_fpclass_ps_mask(v.v, kDenormal)) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), (__m256i)_mm512_cvtneps_pbh(v.v));
    return;
  }
#endif
  vstore_bf16_by_integers(p, v);
}
#endif

template <class V>
inline V exp_v(V x0) {
  using namespace vexp_detail;
  const V x = vclamp(x0, kLo, kHi);
  const V n = vrint(x * V(kLog2e));
  V r = vfma(n, V(-kLn2Hi), x);
  r = vfma(n, V(-kLn2Lo), r);
  V p = V(kP[0]);
  for (int i = 1; i < 6; ++i) p = vfma(p, r, V(kP[i]));
  const V y = vfma(p, r * r, r) + V(1.f);  // 1 + r + r^2 p(r)
  return vnan_pass(x0, vscale2(y, n));
}

// 1 / (1 + exp(-x)): exp(-x) = inf for x < -88.8 gives 0, as it should.
template <class V>
inline V sigmoid_v(V x) {
  return V(1.f) / (V(1.f) + exp_v(-x));
}

inline float exp_f32(float x) { return exp_v(x); }

// Applies fn(lane, i) to i = 0, 16, 32, ... with a Vec16 lane where AVX-512 or AVX2 is there,
// and to the remaining i one by one with a float lane (all of them without either). fn loads
// and stores through vload(p, lane) / vstore.
template <class Fn>
inline void for_lanes(int64_t begin, int64_t end, Fn&& fn) {
  int64_t i = begin;
#ifdef STRATA_VEC16
  for (; i + 16 <= end; i += 16) fn(Vec16{}, i);
#endif
  for (; i < end; ++i) fn(float{}, i);
}

// The same over [0, n) with OpenMP threads, in blocks whose bounds are multiples of 16 (so the
// vector/scalar split, hence nothing, depends on the thread count).
template <class Fn>
inline void parallel_for_lanes(int64_t n, Fn&& fn) {
  constexpr int64_t kBlock = 4096;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b)
    for_lanes(b * kBlock, b + 1 == blocks ? n : (b + 1) * kBlock, fn);
}

// max(x[0], ..., x[n-1]), -inf for n = 0, NaNs skipped (as a loop of std::max(mx, x[i])).
// float vectorised (the maximum is exact in any order); double, for the finite-difference
// references, the loop itself.
float max_of(const float* x, int64_t n);
inline double max_of(const double* x, int64_t n) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  return mx;
}

// y[i] = exp(x[i] - shift) (y may be x); returns the sum of the y[i] in double, summed in a
// fixed order (16 running sums, element i into sum i % 16, then those in order) on both code
// paths.
double exp_shift_sum(const float* x, float* y, int64_t n, float shift);
// x[i] = scale * exp(x[i] - shift)
void exp_shift_scale(float* x, int64_t n, float shift, float scale);

}  // namespace strata
