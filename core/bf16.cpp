#include "core/bf16.h"

#include "core/profile.h"

namespace strata {

void to_bf16(const float* x, bf16* y, int64_t n) {
  ProfScope prof_scope(ProfOp::convert);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_bf16(x[i]);
}

void from_bf16(const bf16* x, float* y, int64_t n) {
  ProfScope prof_scope(ProfOp::convert);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_fp32(x[i]);
}

void to_bf16_rows(const float* x, int64_t ldx, bf16* y, int64_t ldy, int64_t rows, int64_t cols) {
  ProfScope prof_scope(ProfOp::convert);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) y[r * ldy + c] = fp32_to_bf16(x[r * ldx + c]);
}

}  // namespace strata
