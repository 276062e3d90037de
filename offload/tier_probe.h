#pragma once
// Measures what a swap tier really moves per second, for the `auto` activation planner: its
// estimate of what swaps hide is only as good as these two numbers.
#include <cstdint>

#include "offload/activation_plan.h"
#include "offload/tier.h"

namespace strata {

// Measures a tier's write and read bandwidth with `bytes` of data (rounded down to whole pieces,
// at least two) in `piece_bytes` writes through the public SwapTier API: write all, then
// prefetch all + read all, timed with steady_clock. The write phase ends when the last piece's
// write has landed (read back as a fence: a tier read waits for that handle's write); the read
// phase covers the other pieces, verification (memcmp) included. Throws StrataError when the
// data read back differs from what was written, or when the tier lacks room for `bytes`.
// Leaves the tier empty (also when it throws).
TierBandwidth probe_tier_bandwidth(SwapTier& tier, int64_t bytes = 64 << 20,
                                   int64_t piece_bytes = 8 << 20);

}  // namespace strata
