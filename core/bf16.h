#pragma once
// bfloat16: the top 16 bits of an fp32 (same exponent range, 8 bits of mantissa). The storage
// type of the bf16 precision's GEMM operands (core/gemm_bf16.h): weights cast once per step,
// activations saved for GEMMs. fp32 -> bf16 rounds to nearest even (NaN stays a quiet NaN,
// overflow gives infinity); bf16 -> fp32 is exact.
#include <bit>
#include <cstdint>

namespace strata {

using bf16 = uint16_t;

inline bf16 fp32_to_bf16(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<bf16>((u >> 16) | 0x0040u);  // NaN
  // Adding 0x7FFF plus the lowest kept bit rounds half-way cases to the even neighbour;
  // overflow carries into the exponent and correctly yields infinity.
  const uint32_t rounded = u + 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<bf16>(rounded >> 16);
}

inline float bf16_to_fp32(bf16 h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }
// A stored value as fp32, for code written once over the storage (float or bf16).
inline float stored_value(float v) { return v; }
inline float stored_value(bf16 v) { return bf16_to_fp32(v); }

// Elementwise over n values, in parallel (OpenMP; the same bits for any thread count).
void to_bf16(const float* x, bf16* y, int64_t n);
void from_bf16(const bf16* x, float* y, int64_t n);
// A [rows, cols] block with row strides (ld >= cols): for GEMM operands inside a larger buffer.
void to_bf16_rows(const float* x, int64_t ldx, bf16* y, int64_t ldy, int64_t rows, int64_t cols);
void from_bf16_rows(const bf16* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t cols);

}  // namespace strata
