#pragma once
// A long sum in double with a summation order fixed by the code: eight independent partial sums
// (one AVX-512 register of doubles), lane j taking the terms i ≡ j (mod 8), combined pairwise.
// One running sum would be a chain of dependent adds (a few cycles each, never vectorised, since
// the compiler may not reorder it); eight chains vectorise and overlap, and the order, so the
// bits, do not depend on the vectoriser, the alignment or the thread count.
#include <cstdint>

namespace strata {

inline constexpr int64_t kSumLanes = 8;

// Σ_{i<n} term(i), term returning double.
template <class F>
double lane_sum(int64_t n, F term) {
  double lanes[kSumLanes] = {};
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes)
    for (int64_t j = 0; j < kSumLanes; ++j) lanes[j] += term(i + j);
  for (; i < n; ++i) lanes[i % kSumLanes] += term(i);
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
         ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

}  // namespace strata
