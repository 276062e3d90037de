#include "optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace strata {

void LrSchedule::validate() const {
  if (kind != "cosine" && kind != "linear" && kind != "constant")
    throw InputError("optim.schedule: unknown schedule '" + kind +
                     "' (expected cosine, linear or constant)");
  if (!(lr >= 0.f)) throw InputError("optim.lr: must be >= 0, got " + std::to_string(lr));
  if (!(min_lr >= 0.f))
    throw InputError("optim.min_lr: must be >= 0, got " + std::to_string(min_lr));
  if (warmup_steps < 0)
    throw InputError("optim.warmup_steps: must be >= 0, got " + std::to_string(warmup_steps));
  if (total_steps < 1)
    throw InputError("train.steps: must be >= 1, got " + std::to_string(total_steps));
}

float LrSchedule::at(int64_t step) const {
  if (kind != "cosine" && kind != "linear" && kind != "constant") validate();  // throws
  // Warmup in double so lr * (s+1) / warmup rounds once, and the last warmup step is exactly lr.
  if (step < warmup_steps)
    return static_cast<float>(static_cast<double>(lr) * static_cast<double>(step + 1) /
                              static_cast<double>(warmup_steps));
  if (kind == "constant") return lr;
  const int64_t decay_steps = total_steps - 1 - warmup_steps;
  // No room to decay (total_steps <= warmup_steps + 1): every post-warmup step is the last.
  const double p =
      decay_steps <= 0
          ? 1.0
          : std::clamp(static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps),
                       0.0, 1.0);
  const double hi = lr;
  const double lo = min_lr;
  if (kind == "cosine")
    return static_cast<float>(lo + (hi - lo) * 0.5 * (1.0 + std::cos(std::numbers::pi * p)));
  return static_cast<float>(hi + (lo - hi) * p);
}

}  // namespace strata
