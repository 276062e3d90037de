#pragma once
// Contiguous placement of blocks on pipeline stages: the split that makes the slowest stage as
// fast as it can be. A pure function of the costs (launch/pipeline_plan.cpp feeds it the FLOP
// model of models/flops.h).
#include <cstdint>
#include <vector>

namespace strata {

struct StageSplitCosts {
  std::vector<double> blocks;  // cost of each block, in model order (finite, >= 0)
  double first_extra = 0;      // carried by stage 0 only (the embedding)
  double last_extra = 0;       // carried by the last stage only (the head)
};

// The blocks per stage (n_stages entries, each >= 1, summing to blocks.size()) minimising the
// largest stage cost, a stage costing the sum of its blocks plus its extra. Exact: a binary
// search over the answer (every non-negative double, in bit order) with a greedy feasibility
// test, O(64 * blocks).
//
// Ties: among the splits with that least maximum, the one whose last stage holds the most
// blocks, then the one before it, and so on — so earlier stages are lighter. In 1F1B-like
// schedules stage 0 keeps the most micro-batches' activations in flight (pp of them, the last
// stage one), so its spare capacity is best spent holding fewer blocks.
//
// InputError naming both numbers when n_stages < 1 or there are fewer blocks than stages.
std::vector<int64_t> split_stages(const StageSplitCosts& costs, int64_t n_stages);

// The cost of each stage of `counts` (as split_stages measures it).
std::vector<double> stage_costs(const StageSplitCosts& costs, const std::vector<int64_t>& counts);

}  // namespace strata
