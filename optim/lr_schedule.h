#pragma once
// Learning-rate schedules, as a function of the 0-based optimizer step:
//   warmup  step s < warmup_steps:  lr * (s+1) / warmup_steps   (the first step is not lr = 0)
//   cosine  min_lr + (lr-min_lr) * (1 + cos(pi*p)) / 2
//   linear  lr + (min_lr-lr) * p
//   constant lr (min_lr unused)
// with p = (s - warmup_steps) / (total_steps - 1 - warmup_steps) clamped to [0, 1]: the decay
// starts at lr on the first step after warmup and reaches min_lr on the last step, total_steps-1
// (and stays there if training runs past total_steps).
#include <cstdint>
#include <string>

namespace strata {

struct LrSchedule {
  std::string kind = "cosine";  // cosine | linear | constant
  float lr = 3e-3f;
  float min_lr = 3e-4f;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;

  // Throws InputError("optim.<key>: ...") for an unknown kind or out-of-range values.
  void validate() const;
  // Learning rate for 0-based optimizer step `step`. Throws InputError for an unknown kind.
  float at(int64_t step) const;
};

}  // namespace strata
