#include "models/gemm_ops.h"

#include <memory>

#include "core/error.h"
#include "core/gemm.h"
#include "core/gemm_bf16.h"

namespace strata {

Operand operand_of(Precision p, const SharedBuffer& b) {
  STRATA_CHECK(b, "a GEMM operand without a buffer");
  Operand o;
  if (p == Precision::bf16)
    o.b16 = as_bf16(*b);
  else
    o.f32 = b->data();
  o.keep = b;
  return o;
}

Operand to_operand(Precision p, const float* x, int64_t n, const SharedBuffer& keep) {
  if (p == Precision::fp32) return Operand{x, nullptr, keep};
  auto b = std::make_shared<FloatBuffer>(
      FloatBuffer::uninitialised(operand_floats(p, n), MemCategory::activations));
  to_bf16(x, as_bf16(*b), n);
  return operand_of(p, b);
}

UnitGemms::UnitGemms(Precision p, const ParamUnit& u, const float* w)
    : p_(p), w_(w), wb_(p == Precision::bf16 ? u.params_bf16() : nullptr) {}

void UnitGemms::forward(const Operand& X, int64_t w_off, float* Y, int64_t M, int64_t N, int64_t K,
                        bool accumulate) const {
  const float beta = accumulate ? 1.f : 0.f;
  if (p_ == Precision::bf16) {
    STRATA_CHECK(X.b16, "a bf16 GEMM with an fp32 activation");
    gemm_bf16(false, true, M, N, K, 1.f, X.b16, K, wb_ + w_off, K, beta, Y, N);
  } else {
    sgemm(false, true, M, N, K, 1.f, X.f32, K, w_ + w_off, K, beta, Y, N);
  }
}

Operand UnitGemms::forward_saved(SavedTensors& saved, const std::string& name, const Operand& X,
                                 int64_t w_off, int64_t M, int64_t N, int64_t K) const {
  float* y = saved.add_uninitialised(name, operand_floats(p_, M * N));
  if (p_ == Precision::bf16)
    forward_bf16(X, w_off, reinterpret_cast<bf16*>(y), M, N, K);
  else
    forward(X, w_off, y, M, N, K);
  return operand_of(p_, saved.buffer(name));
}

void UnitGemms::forward_bf16(const Operand& X, int64_t w_off, bf16* Y, int64_t M, int64_t N,
                             int64_t K) const {
  STRATA_CHECK(p_ == Precision::bf16 && X.b16, "a bf16 GEMM with an fp32 activation");
  gemm_bf16_to_bf16(false, true, M, N, K, X.b16, K, wb_ + w_off, K, Y, N);
}

void UnitGemms::backward_input(const Operand& dY, int64_t w_off, float* dX, int64_t M, int64_t N,
                               int64_t K, bool accumulate) const {
  const float beta = accumulate ? 1.f : 0.f;
  if (p_ == Precision::bf16) {
    STRATA_CHECK(dY.b16, "a bf16 GEMM with an fp32 gradient");
    gemm_bf16(false, false, M, K, N, 1.f, dY.b16, N, wb_ + w_off, K, beta, dX, K);
  } else {
    sgemm(false, false, M, K, N, 1.f, dY.f32, N, w_ + w_off, K, beta, dX, K);
  }
}

void gemm_backward_weight(const Operand& dY, const Operand& X, float* dW, int64_t M, int64_t N,
                          int64_t K) {
  if (dY.b16) {
    STRATA_CHECK(X.b16, "a bf16 weight gradient with an fp32 input");
    gemm_bf16(true, false, N, K, M, 1.f, dY.b16, N, X.b16, K, 1.f, dW, K);
  } else {
    STRATA_CHECK(X.f32, "an fp32 weight gradient with a bf16 input");
    sgemm(true, false, N, K, M, 1.f, dY.f32, N, X.f32, K, 1.f, dW, K);
  }
}

}  // namespace strata
