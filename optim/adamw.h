#pragma once
// AdamW with decoupled weight decay (Loshchilov & Hutter), in torch.optim.AdamW's order of
// operations (single-tensor path), so a step matches PyTorch to the rounding of each operation:
//   p  = p * (1 - lr*wd)                       (decay segments only)
//   m  = m + (1-b1) * (g - m)                  (torch's lerp)
//   v  = v*b2 + ((1-b2)*g)*g
//   p  = p + (-lr/(1-b1^t)) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
// The per-step scalars are formed in double and rounded to float, as PyTorch does with Python
// floats; the element loop is fp32.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/memory.h"
#include "optim/optimizer.h"

namespace strata {

struct AdamWOptions {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;
};

class AdamW final : public Optimizer {
 public:
  // n: elements this optimizer updates (a whole flat buffer or one shard of it). Options out of
  // range throw InputError naming the optim.* key.
  AdamW(int64_t n, const AdamWOptions& options);

  void step(float* params, const float* grads, int64_t n, const std::vector<DecaySegment>& segments,
            float lr, float grad_scale = 1.f) override;
  std::vector<std::pair<std::string, FloatBuffer*>> state() override;

  const AdamWOptions& options() const { return options_; }

 private:
  AdamWOptions options_;
  FloatBuffer exp_avg_;     // m
  FloatBuffer exp_avg_sq_;  // v
};

}  // namespace strata
