#pragma once
// SGD with momentum, torch.optim.SGD semantics (dampening 0, no Nesterov):
//   buf = buf*momentum + g          (buf starts at 0, so step 1 gives buf = g as torch's clone)
//   p   = p + (-lr) * buf
// Weight decay, when non-zero, is decoupled as in AdamW (p = p * (1 - lr*wd) first, on decay
// segments only) rather than torch.optim.SGD's L2 term added to the gradient; with
// weight_decay = 0 the update is exactly torch.optim.SGD(lr, momentum).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/memory.h"
#include "optim/optimizer.h"

namespace strata {

struct SGDOptions {
  float momentum = 0.9f;
  float weight_decay = 0.f;
};

class SGD final : public Optimizer {
 public:
  // Options out of range throw InputError naming the optim.* key.
  SGD(int64_t n, const SGDOptions& options);

  void step(float* params, const float* grads, int64_t n, const std::vector<DecaySegment>& segments,
            float lr, float grad_scale = 1.f) override;
  std::vector<std::pair<std::string, FloatBuffer*>> state() override;

  const SGDOptions& options() const { return options_; }

 private:
  SGDOptions options_;
  FloatBuffer momentum_buffer_;
};

}  // namespace strata
