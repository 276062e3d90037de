#pragma once
// Wall-clock intervals, for step timings in the logs and the block timings the offload planner
// works from. steady_clock: immune to system clock changes.
#include <chrono>

namespace strata {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace strata
