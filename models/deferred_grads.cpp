#include "models/deferred_grads.h"

#include <cstring>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>

#include "core/error.h"
#include "models/gemm_ops.h"

namespace strata {

SharedBuffer DeferredWeightGrads::copy(const float* src, int64_t n) {
  auto buf = std::make_shared<FloatBuffer>(FloatBuffer::uninitialised(n, MemCategory::activations));
  if (n > 0) std::memcpy(buf->data(), src, sizeof(float) * static_cast<size_t>(n));
  return buf;
}

void DeferredWeightGrads::record(SharedBuffer dy, SharedBuffer x, int64_t dw_offset, int64_t M,
                                 int64_t N, int64_t K, Precision p) {
  STRATA_CHECK(dy && x, "deferred weight gradient recorded without an input buffer");
  STRATA_CHECK(M >= 0 && N >= 0 && K >= 0 && dw_offset >= 0,
               "deferred weight gradient with a negative shape or offset");
  // Checked here, not in run(): a short buffer is a bug of the backward that recorded it.
  STRATA_CHECK(dy->size() >= operand_floats(p, M * N) && x->size() >= operand_floats(p, M * K),
               "deferred weight gradient [" + std::to_string(N) + "," + std::to_string(K) +
                   "] over " + std::to_string(M) + " rows: input buffers too small");
  gemms_.push_back({std::move(dy), std::move(x), dw_offset, M, N, K, p});
}

void DeferredWeightGrads::run(float* dw_base) {
  // Moved out first: the recording is empty even if a GEMM throws half way.
  std::vector<Gemm> gemms = std::move(gemms_);
  gemms_.clear();
  for (Gemm& g : gemms) {
    gemm_backward_weight(operand_of(g.p, g.dy), operand_of(g.p, g.x), dw_base + g.dw_offset, g.M,
                         g.N, g.K);
    // Memory falls through W as it does through I: a buffer goes with its last GEMM.
    g.dy.reset();
    g.x.reset();
  }
}

int64_t DeferredWeightGrads::bytes() const {
  std::unordered_set<const FloatBuffer*> seen;
  int64_t total = 0;
  for (const Gemm& g : gemms_)
    for (const FloatBuffer* b : {g.dy.get(), g.x.get()})
      if (seen.insert(b).second) total += b->capacity_bytes();
  return total;
}

}  // namespace strata
