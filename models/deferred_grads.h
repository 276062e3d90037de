#pragma once
// The weight-gradient GEMMs of a backward, recorded instead of run, for the zero-bubble pipeline
// schedules: their backward splits into I (the input gradient, on the critical path: the stage
// before waits for it) and W (the weight gradients, deferred to fill what would be a bubble).
//
// Each record is dW[N,K] += dY[M,N]^T X[M,K] (linear_backward_weight of core/gemm.h) with dW at
// an offset of the unit's flat gradient buffer. The recording keeps both inputs alive until
// run(): a buffer that nobody writes before then is shared, anything else is copied, so the
// caller may overwrite its own dy/dx and the backward may reuse its scratch freely after I.
#include <cstdint>
#include <vector>

#include "core/precision.h"
#include "offload/saved_tensors.h"

namespace strata {

class DeferredWeightGrads {
 public:
  DeferredWeightGrads() = default;
  DeferredWeightGrads(DeferredWeightGrads&&) noexcept = default;
  DeferredWeightGrads& operator=(DeferredWeightGrads&&) noexcept = default;
  DeferredWeightGrads(const DeferredWeightGrads&) = delete;
  DeferredWeightGrads& operator=(const DeferredWeightGrads&) = delete;

  // A private copy of n floats (MemCategory::activations), for an input the caller will
  // overwrite before run().
  static SharedBuffer copy(const float* src, int64_t n);

  // Records dW[N,K] += dY[M,N]^T X[M,K], dW at dw_offset, both inputs stored in precision p
  // (models/gemm_ops.h: bf16 values in half as many floats). dy and x are held (shared) until
  // run(): whoever else holds them must not write them before then.
  void record(SharedBuffer dy, SharedBuffer x, int64_t dw_offset, int64_t M, int64_t N, int64_t K,
              Precision p = Precision::fp32);

  // Runs every recorded GEMM into dw_base + offset, in recorded order (so the sums are those of
  // the undeferred backward), releasing each record's inputs after its GEMM; leaves it empty.
  void run(float* dw_base);

  // Memory held by the recorded inputs (each distinct buffer once, padding included).
  int64_t bytes() const;
  bool empty() const { return gemms_.empty(); }
  int64_t size() const { return static_cast<int64_t>(gemms_.size()); }
  // Drops every record unrun (e.g. a step abandoned after I).
  void clear() { gemms_.clear(); }

 private:
  struct Gemm {
    SharedBuffer dy, x;
    int64_t dw_offset, M, N, K;
    Precision p;
  };
  std::vector<Gemm> gemms_;
};

}  // namespace strata
