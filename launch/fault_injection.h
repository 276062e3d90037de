#pragma once
// Fault injection for the tests of the collective watchdog (test-only; never set it in a real
// job). STRATA_FAULT, read once when the trainer starts, makes one rank sit in a long
// computation inside a step, at a block boundary, on the real code path:
//
//   STRATA_FAULT="stall:rank=1,step=3,seconds=600"
//
// rank: the world rank that stalls; step: the 1-based step in which it stalls (before the forward
// of the first block after the embedding); seconds: how long. The other ranks then wait in their
// next collective until the watchdog's deadline (train.collective_timeout_s) names this rank.
// A malformed value is an input error (exit 2).
#include <cstdint>
#include <optional>
#include <string>

namespace strata {

struct StallFault {
  int rank = 0;
  int64_t step = 0;
  double seconds = 0;
};

// Parses a STRATA_FAULT value; throws InputError naming the variable on a malformed one.
StallFault parse_fault(const std::string& spec);
// The fault of the environment (STRATA_FAULT), if any.
std::optional<StallFault> fault_from_env();
// Sits in a long computation (a sleep, ignoring stop signals as real compute does) when `rank`
// and `step` are the fault's; logs it first so the test output shows where.
void inject_stall(const StallFault& f, int rank, int64_t step);

}  // namespace strata
