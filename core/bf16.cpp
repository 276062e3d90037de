#include "core/bf16.h"

#include "core/profile.h"
#include "core/vexp.h"

namespace strata {

// Through core/vexp.h's lanes: 16 values per AVX-512 instruction sequence, the scalar tail the
// same bits (the scalar conversion's NaN branch kept the compiler from vectorising it).
void to_bf16(const float* x, bf16* y, int64_t n) {
  ProfScope prof_scope(ProfOp::convert);
  parallel_for_lanes(n, [&](auto lane, int64_t i) { vstore(y + i, vload(x + i, lane)); });
}

void from_bf16(const bf16* x, float* y, int64_t n) {
  ProfScope prof_scope(ProfOp::convert);
  parallel_for_lanes(n, [&](auto lane, int64_t i) { vstore(y + i, vload(x + i, lane)); });
}

void to_bf16_rows(const float* x, int64_t ldx, bf16* y, int64_t ldy, int64_t rows, int64_t cols) {
  ProfScope prof_scope(ProfOp::convert);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) y[r * ldy + c] = fp32_to_bf16(x[r * ldx + c]);
}

void from_bf16_rows(const bf16* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t cols) {
  ProfScope prof_scope(ProfOp::convert);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    for_lanes(0, cols,
              [&](auto lane, int64_t c) { vstore(y + r * ldy + c, vload(x + r * ldx + c, lane)); });
}

}  // namespace strata
