// Contiguous stage placement (parallel/stage_split.h): balanced splits, extras on the end
// stages, the documented tie-break, and optimality against brute force on small cases.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>
#include <vector>

#include "input_error_util.h"
#include "parallel/stage_split.h"

namespace strata {
namespace {

using Counts = std::vector<int64_t>;

StageSplitCosts uniform(size_t n, double cost, double first = 0, double last = 0) {
  return {std::vector<double>(n, cost), first, last};
}

double max_cost(const StageSplitCosts& c, const Counts& counts) {
  const std::vector<double> costs = stage_costs(c, counts);
  return *std::max_element(costs.begin(), costs.end());
}

TEST(StageSplit, UniformBlocksSplitEqually) {
  EXPECT_EQ(split_stages(uniform(8, 1), 4), (Counts{2, 2, 2, 2}));
  EXPECT_EQ(split_stages(uniform(12, 2.5), 3), (Counts{4, 4, 4}));
  EXPECT_EQ(split_stages(uniform(5, 1), 1), (Counts{5}));
  EXPECT_EQ(split_stages(uniform(4, 1), 4), (Counts{1, 1, 1, 1}));
  // Not divisible: the spare room goes to the earlier stages (they hold fewer blocks).
  EXPECT_EQ(split_stages(uniform(9, 1), 4), (Counts{1, 2, 3, 3}));
}

TEST(StageSplit, AHeavyHeadLeavesTheLastStageFewerBlocks) {
  const StageSplitCosts c = uniform(8, 1, 0, 3);  // the head costs three blocks
  const Counts counts = split_stages(c, 4);
  EXPECT_EQ(counts.back(), 1);
  EXPECT_DOUBLE_EQ(max_cost(c, counts), 4);  // 11 units over 4 stages, head + 1 block on one
  for (int64_t n : counts) EXPECT_GE(n, 1);
  // A heavy embedding does the same to the first stage.
  const Counts front = split_stages(uniform(8, 1, 3, 0), 4);
  EXPECT_EQ(front.front(), 1);
}

TEST(StageSplit, StageCostsAddTheExtrasToTheEndStages) {
  const StageSplitCosts c{{1, 2, 3, 4}, 10, 100};
  EXPECT_EQ(stage_costs(c, {1, 2, 1}), (std::vector<double>{11, 5, 104}));
  EXPECT_EQ(stage_costs(c, {4}), (std::vector<double>{120}));
}

TEST(StageSplit, FreeBlocksStillGiveEveryStageOne) {
  EXPECT_EQ(split_stages(uniform(5, 0), 3), (Counts{1, 1, 3}));
}

TEST(StageSplit, TooFewBlocksNameBothNumbers) {
  test::expect_input_error([] { split_stages(uniform(3, 1), 4); }, "3 blocks cannot fill 4 stages");
  test::expect_input_error([] { split_stages(uniform(3, 1), 0); }, "got 0");
}

// Every split into n_stages non-empty contiguous stages.
void each_split(int64_t blocks, int64_t n_stages, const std::function<void(const Counts&)>& fn) {
  Counts counts;
  std::function<void(int64_t)> rec = [&](int64_t left) {
    const auto k = static_cast<int64_t>(counts.size());
    if (k + 1 == n_stages) {
      counts.push_back(left);
      fn(counts);
      counts.pop_back();
      return;
    }
    for (int64_t c = 1; c <= left - (n_stages - k - 1); ++c) {
      counts.push_back(c);
      rec(left - c);
      counts.pop_back();
    }
  };
  rec(blocks);
}

// The documented choice among equal maxima: the fullest last stage, then the one before, ...
bool preferred(const Counts& a, const Counts& b) {
  return std::lexicographical_compare(b.rbegin(), b.rend(), a.rbegin(), a.rend());
}

TEST(StageSplit, OptimalAndTieBrokenAsDocumentedAgainstBruteForce) {
  std::mt19937 g(11);
  for (int trial = 0; trial < 400; ++trial) {
    const auto blocks = static_cast<int64_t>(1 + g() % 9);
    const auto n_stages = static_cast<int64_t>(1 + g() % blocks);
    StageSplitCosts c;  // small integers: every sum is exact, so ties are real ties
    for (int64_t i = 0; i < blocks; ++i) c.blocks.push_back(static_cast<double>(g() % 10));
    c.first_extra = static_cast<double>(g() % 16);
    c.last_extra = static_cast<double>(g() % 16);
    Counts best;
    double best_max = 0;
    each_split(blocks, n_stages, [&](const Counts& counts) {
      const double m = max_cost(c, counts);
      if (best.empty() || m < best_max || (m == best_max && preferred(counts, best)))
        best = counts, best_max = m;
    });
    const Counts got = split_stages(c, n_stages);
    EXPECT_EQ(max_cost(c, got), best_max) << "trial " << trial;
    EXPECT_EQ(got, best) << "trial " << trial;
  }
}

}  // namespace
}  // namespace strata
