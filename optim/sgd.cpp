#include "optim/sgd.h"

#include "core/error.h"

// Every multiply and add rounds on its own (see the header).
#include "optim/no_fp_contract.h"

namespace strata {

namespace {
// Below this many elements a parallel region costs more than it saves (norm gains are ~1e3).
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

SGD::SGD(int64_t n, const SGDOptions& options)
    : options_(options), momentum_buffer_(n, MemCategory::optimizer) {
  if (!(options.momentum >= 0.f && options.momentum < 1.f))
    throw InputError("optim.momentum: must be in [0, 1), got " + std::to_string(options.momentum));
  if (!(options.weight_decay >= 0.f))
    throw InputError("optim.weight_decay: must be >= 0, got " +
                     std::to_string(options.weight_decay));
}

void SGD::step(float* params, const float* grads, int64_t n,
               const std::vector<DecaySegment>& segments, float lr, float grad_scale) {
  STRATA_CHECK(n == momentum_buffer_.size(), "SGD built for " +
                                                 std::to_string(momentum_buffer_.size()) +
                                                 " elements, stepped on " + std::to_string(n));
  check_segments(segments, n);
  ++steps_;

  const float neg_lr = -lr;
  const float mu = options_.momentum;
  const float decay_factor =
      static_cast<float>(1.0 - static_cast<double>(lr) * options_.weight_decay);
  float* buf = momentum_buffer_.data();
  float* gz = take_grads_to_clear(grads);
  for (const DecaySegment& seg : segments) {
    const float keep = seg.decay ? decay_factor : 1.f;  // x * 1.0f is exact
    const int64_t begin = seg.offset;
    const int64_t end = seg.offset + seg.numel;
    // Element-wise only: the result does not depend on the thread count.
#pragma omp parallel for simd schedule(static) if (seg.numel >= kParallelMin)
    for (int64_t i = begin; i < end; ++i) {
      const float b = buf[i] * mu + grads[i] * grad_scale;
      if (gz) gz[i] = 0.f;
      buf[i] = b;
      params[i] = params[i] * keep + neg_lr * b;
    }
  }
  write_bf16_copy(params, n);
}

std::vector<std::pair<std::string, FloatBuffer*>> SGD::state() {
  return {{"momentum_buffer", &momentum_buffer_}};
}

}  // namespace strata
