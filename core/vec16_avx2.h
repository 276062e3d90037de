#pragma once
// core/vexp.h's 16-float lane on a CPU with AVX2 and FMA but no AVX-512 (AMD's Zen 3 EPYC, for
// one): two 8-float registers, each operation on both halves. The same operations as the AVX-512
// lane, each IEEE-exact or correctly rounded, so every lane of it gives the scalar lane's bits
// (tests/unit/test_vexp.cpp): the width of 16 keeps the callers' fixed 16-way sums as they are.
// Included by core/vexp.h only.
#include <immintrin.h>

#include <cstdint>

#include "core/bf16.h"

#define STRATA_VEC16 1

namespace strata {

struct Vec16 {
  __m256 lo, hi;
  Vec16() = default;
  Vec16(__m256 l, __m256 h) : lo(l), hi(h) {}
  Vec16(float x) : lo(_mm256_set1_ps(x)), hi(_mm256_set1_ps(x)) {}
};

inline Vec16 operator+(Vec16 a, Vec16 b) {
  return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)};
}
inline Vec16 operator-(Vec16 a, Vec16 b) {
  return {_mm256_sub_ps(a.lo, b.lo), _mm256_sub_ps(a.hi, b.hi)};
}
inline Vec16 operator*(Vec16 a, Vec16 b) {
  return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)};
}
inline Vec16 operator/(Vec16 a, Vec16 b) {
  return {_mm256_div_ps(a.lo, b.lo), _mm256_div_ps(a.hi, b.hi)};
}
// A sign flip, as the scalar -x (0 - x would differ for -0 and a NaN's sign).
inline Vec16 operator-(Vec16 a) {
  const __m256 sign = _mm256_castsi256_ps(_mm256_set1_epi32(INT32_MIN));
  return {_mm256_xor_ps(a.lo, sign), _mm256_xor_ps(a.hi, sign)};
}
inline Vec16 vfma(Vec16 a, Vec16 b, Vec16 c) {
  return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
}
inline Vec16 vclamp(Vec16 x, float lo, float hi) {
  const __m256 l = _mm256_set1_ps(lo), h = _mm256_set1_ps(hi);
  return {_mm256_min_ps(_mm256_max_ps(x.lo, l), h), _mm256_min_ps(_mm256_max_ps(x.hi, l), h)};
}
inline Vec16 vsqrt(Vec16 x) { return {_mm256_sqrt_ps(x.lo), _mm256_sqrt_ps(x.hi)}; }
inline Vec16 vrint(Vec16 x) {
  constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  return {_mm256_round_ps(x.lo, kNearest), _mm256_round_ps(x.hi, kNearest)};
}

namespace vec16_avx2_detail {
// The scalar lane's y 2^n (core/vexp.h) on 8 lanes: n (an integer in [-151, 129]) split into
// k1 = n / 2 (toward zero) and k2 = n - k1, two exact powers of two built in the exponent
// field, so only the second multiply rounds, as AVX-512's scalef.
inline __m256 scale2(__m256 y, __m256 n) {
  const __m256i k = _mm256_cvttps_epi32(n);
  const __m256i k1 = _mm256_srai_epi32(_mm256_add_epi32(k, _mm256_srli_epi32(k, 31)), 1);
  const __m256i k2 = _mm256_sub_epi32(k, k1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 p1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
  const __m256 p2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(y, p1), p2);
}
inline __m256 nan_pass(__m256 x, __m256 y) {
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}
// 8 bf16 -> 8 floats, exactly.
inline __m256 load_bf16(const bf16* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
// fp32_to_bf16 on 8 lanes (add 0x7FFF plus the lowest kept bit; a NaN made quiet), as 8 shorts.
inline __m128i to_bf16(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i kept_lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i bias = _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), kept_lsb);
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
  // |u| > inf's bits: both sides below 2^31, so the signed compare is the unsigned one
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF)),
                                         _mm256_set1_epi32(0x7F800000));
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  const __m256i r = _mm256_blendv_epi8(rounded, quiet, nan);
  // packus works within 128-bit halves: [r0-3 r0-3 | r4-7 r4-7]; qwords 0 and 2 are r0-7
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0b1000);
  return _mm256_castsi256_si128(packed);
}
}  // namespace vec16_avx2_detail

inline Vec16 vscale2(Vec16 y, Vec16 n) {
  return {vec16_avx2_detail::scale2(y.lo, n.lo), vec16_avx2_detail::scale2(y.hi, n.hi)};
}
// a + b with a a product just formed: GCC implements the AVX2 intrinsics as plain vector
// arithmetic and would contract the two into an FMA; the empty asm hides a's origin.
inline Vec16 vadd_unfused(Vec16 a, Vec16 b) {
  __asm__("" : "+x"(a.lo), "+x"(a.hi));
  return a + b;
}
inline Vec16 vnan_pass(Vec16 x, Vec16 y) {
  return {vec16_avx2_detail::nan_pass(x.lo, y.lo), vec16_avx2_detail::nan_pass(x.hi, y.hi)};
}
inline Vec16 vload(const float* p, Vec16) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
inline void vstore(float* p, Vec16 v) {
  _mm256_storeu_ps(p, v.lo);
  _mm256_storeu_ps(p + 8, v.hi);
}
inline Vec16 vload(const bf16* p, Vec16) {
  return {vec16_avx2_detail::load_bf16(p), vec16_avx2_detail::load_bf16(p + 8)};
}
inline void vstore(bf16* p, Vec16 v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), vec16_avx2_detail::to_bf16(v.lo));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p + 8), vec16_avx2_detail::to_bf16(v.hi));
}

}  // namespace strata
