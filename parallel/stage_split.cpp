#include "parallel/stage_split.h"

#include <bit>
#include <cmath>
#include <limits>
#include <string>

#include "core/error.h"

namespace strata {
namespace {

// A stage's cost is accumulated from its last block to its first (the head's extra first, the
// embedding's last): the order the right-to-left greedy below adds them in, so the costs it
// compares with the bound are exactly the costs stage_costs reports.
double range_cost(const StageSplitCosts& c, int64_t begin, int64_t end, bool first, bool last) {
  double cost = last ? c.last_extra : 0;
  for (int64_t i = end; i > begin; --i) cost += c.blocks[static_cast<size_t>(i - 1)];
  return first ? cost + c.first_extra : cost;
}

// Fills stages from the last to the first, each with as many blocks as keep it within `bound`
// while leaving one block for every earlier stage; false when some stage cannot stay within it.
// Taking the most blocks it can never hurts the stages before (their share only shrinks), so
// this succeeds whenever any split within `bound` exists — and among those it picks the one
// with the fullest later stages, the documented tie-break.
bool fill_from_the_end(const StageSplitCosts& c, int64_t n_stages, double bound,
                       std::vector<int64_t>* counts) {
  int64_t end = static_cast<int64_t>(c.blocks.size());
  for (int64_t k = n_stages - 1; k >= 1; --k) {
    double cost = k == n_stages - 1 ? c.last_extra : 0;
    int64_t begin = end;
    while (begin > k && cost + c.blocks[static_cast<size_t>(begin - 1)] <= bound)
      cost += c.blocks[static_cast<size_t>(--begin)];
    if (begin == end) return false;  // not even one block fits
    if (counts) (*counts)[static_cast<size_t>(k)] = end - begin;
    end = begin;
  }
  if (range_cost(c, 0, end, true, n_stages == 1) > bound) return false;
  if (counts) (*counts)[0] = end;
  return true;
}

void check_costs(const StageSplitCosts& c) {
  auto ok = [](double x) { return std::isfinite(x) && x >= 0; };
  for (double b : c.blocks) STRATA_CHECK(ok(b), "a block cost is negative or not finite");
  STRATA_CHECK(ok(c.first_extra) && ok(c.last_extra), "a stage extra is negative or not finite");
}

}  // namespace

std::vector<int64_t> split_stages(const StageSplitCosts& costs, int64_t n_stages) {
  const auto n_blocks = static_cast<int64_t>(costs.blocks.size());
  if (n_stages < 1)
    throw InputError("pipeline placement: expected at least 1 stage, got " +
                     std::to_string(n_stages));
  if (n_blocks < n_stages)
    throw InputError("pipeline placement: " + std::to_string(n_blocks) + " blocks cannot fill " +
                     std::to_string(n_stages) + " stages (every stage holds at least one block)");
  check_costs(costs);
  // Non-negative doubles order like their bit patterns, so bisecting the bits finds the least
  // feasible bound exactly, in at most 64 steps; +inf is always feasible.
  uint64_t lo = 0, hi = std::bit_cast<uint64_t>(std::numeric_limits<double>::infinity());
  if (fill_from_the_end(costs, n_stages, 0.0, nullptr)) hi = 0;
  while (lo + 1 < hi) {  // invariant: hi feasible, lo infeasible (or hi == 0)
    const uint64_t mid = lo + (hi - lo) / 2;
    if (fill_from_the_end(costs, n_stages, std::bit_cast<double>(mid), nullptr))
      hi = mid;
    else
      lo = mid;
  }
  std::vector<int64_t> counts(static_cast<size_t>(n_stages), 0);
  STRATA_CHECK(fill_from_the_end(costs, n_stages, std::bit_cast<double>(hi), &counts),
               "the least feasible bound is not feasible");
  return counts;
}

std::vector<double> stage_costs(const StageSplitCosts& costs, const std::vector<int64_t>& counts) {
  std::vector<double> out;
  int64_t begin = 0;
  for (size_t k = 0; k < counts.size(); ++k) {
    const int64_t end = begin + counts[k];
    STRATA_CHECK(counts[k] >= 0 && end <= static_cast<int64_t>(costs.blocks.size()),
                 "stage counts past the blocks");
    out.push_back(range_cost(costs, begin, end, k == 0, k + 1 == counts.size()));
    begin = end;
  }
  return out;
}

}  // namespace strata
