#pragma once
// A process-wide count of parameter updates. Whatever writes parameters in place (the optimizer
// step, initialisation, loading a checkpoint or weights) bumps it; what is derived from the
// parameters (the bf16 weight copies of the bf16 precision, models/param_unit.h) is rebuilt on
// its first use after a bump, so the cast happens once per step, after the optimizer, and never
// per GEMM. Main thread only, like every parameter write.
#include <cstdint>

namespace strata {

uint64_t weights_epoch();
void bump_weights_epoch();

}  // namespace strata
