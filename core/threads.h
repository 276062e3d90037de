#pragma once
// When a kernel's OpenMP loop should fork at all.
#include <cstdint>

namespace strata {

// Threads only pay off above a minimum of work: an OpenMP fork/join costs microseconds, and far
// more when the cores are oversubscribed (several ranks or test binaries on one machine), which
// would dominate the tiny calls of tests and toy models.
inline bool worth_threads(int64_t multiply_adds) { return multiply_adds >= (int64_t{1} << 18); }

}  // namespace strata
