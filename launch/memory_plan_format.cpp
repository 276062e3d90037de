// What `strata plan` prints: the per-rank table, the communication per axis, the verdict, and
// for a job over train.max_memory_mb the category that overflows and the layouts that would fit.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <sstream>
#include <utility>
#include <vector>

#include "core/error.h"
#include "launch/memory_plan.h"

namespace strata {

namespace {

std::string mib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", bytes / (1024.0 * 1024.0));
  return buf;
}

// Ranks with the same numbers (the dp and sp replicas of a pipeline rank, up to a shard's
// rounding) are printed once.
bool same_plan(const RankMemoryPlan& a, const RankMemoryPlan& b) {
  for (int k = 0; k < kNumMemCategories; ++k)
    if (mib(a.peak[k]) != mib(b.peak[k])) return false;
  return a.comm_bytes == b.comm_bytes;
}

MemCategory largest_category(const RankMemoryPlan& r) {
  int best = 0;
  for (int k = 1; k < kNumMemCategories; ++k)
    if (r.peak[k] > r.peak[best]) best = k;
  return static_cast<MemCategory>(best);
}

// Variants of the job that may fit, for the overflow message: each is the job with a few keys
// changed, planned again (a variant the trainer would refuse is skipped).
struct Variant {
  std::string what;
  std::function<void(JobConfig&)> apply;
};

std::vector<Variant> variants(const JobConfig& c) {
  std::vector<Variant> v;
  const ParallelConfig& p = c.parallel;
  for (int64_t z = p.zero_stage + 1; z <= 3 && p.dp * p.sp > 1; ++z)
    v.push_back({"parallel.zero_stage: " + std::to_string(z),
                 [z](JobConfig& j) { j.parallel.zero_stage = z; }});
  for (int64_t dp : {p.dp * 2, p.dp * 4})
    if (c.train.global_batch % (dp * c.train.micro_batch) == 0)
      v.push_back({"parallel.dp: " + std::to_string(dp) + " with parallel.zero_stage: 3 (" +
                       std::to_string(p.pp * dp * p.sp) + " ranks)",
                   [dp](JobConfig& j) {
                     j.parallel.dp = dp;
                     j.parallel.zero_stage = 3;
                   }});
  for (int64_t sp : {p.sp * 2, p.sp * 4})
    if (c.data.seq_len % sp == 0)
      v.push_back({"parallel.sp: " + std::to_string(sp) + " (" + std::to_string(p.pp * p.dp * sp) +
                       " ranks)",
                   [sp](JobConfig& j) { j.parallel.sp = sp; }});
  for (const char* policy : {"recompute", "swap"})
    if (c.offload.policy != policy)
      v.push_back({std::string("offload.policy: ") + policy,
                   [policy](JobConfig& j) { j.offload.policy = policy; }});
  if (c.train.micro_batch > 1 && c.train.micro_batch % 2 == 0)
    v.push_back({"train.micro_batch: " + std::to_string(c.train.micro_batch / 2),
                 [](JobConfig& j) { j.train.micro_batch /= 2; }});
  return v;
}

}  // namespace

std::string format_memory_plan(const MemoryPlan& plan, const JobConfig& cfg) {
  std::ostringstream os;
  const ParallelConfig& p = cfg.parallel;
  os << "strata plan: " << cfg.source << ": " << p.pp * p.dp * p.sp << " rank(s), pp=" << p.pp
     << " dp=" << p.dp << " sp=" << p.sp << " zero_stage=" << p.zero_stage
     << (p.vocab_parallel ? " vocab_parallel" : "") << ", offload " << cfg.offload.policy
     << ", precision " << cfg.train.precision << "\n";
  os << "predicted peak memory per step (MiB; each category at its own peak):\n";
  os << "  rank(s)      ";
  for (int k = 0; k < kNumMemCategories; ++k) {
    char col[16];
    std::snprintf(col, sizeof col, "%12s", mem_category_name(static_cast<MemCategory>(k)));
    os << col;
  }
  os << "       total\n";
  for (size_t i = 0; i < plan.ranks.size();) {
    size_t j = i + 1;
    while (j < plan.ranks.size() && plan.ranks[j].pp_rank == plan.ranks[i].pp_rank &&
           same_plan(plan.ranks[i], plan.ranks[j]))
      ++j;
    char ranks[64], row[32];
    if (j - i > 1)
      std::snprintf(ranks, sizeof ranks, "%d-%d (pp %d)", static_cast<int>(i),
                    static_cast<int>(j - 1), plan.ranks[i].pp_rank);
    else
      std::snprintf(ranks, sizeof ranks, "%d (pp %d)", static_cast<int>(i), plan.ranks[i].pp_rank);
    os << "  " << std::left;
    os.width(13);
    os << ranks << std::right;
    for (int k = 0; k < kNumMemCategories; ++k) {
      std::snprintf(row, sizeof row, "%12s", mib(plan.ranks[i].peak[k]).c_str());
      os << row;
    }
    std::snprintf(row, sizeof row, "%12s", mib(plan.ranks[i].total_peak).c_str());
    os << row << "\n";
    if (plan.ranks[i].total_slow > plan.ranks[i].total_peak)
      os << "    with a swap device slower than the forward (offload.writes_in_flight sets of "
            "writes in flight): io up to "
         << mib(plan.ranks[i].io_slow) << ", total up to " << mib(plan.ranks[i].total_slow) << "\n";
    i = j;
  }
  os << "communication per step, rank " << plan.largest().rank << " (MiB by axis):";
  for (const auto& [axis, bytes] : plan.largest().comm_bytes)
    if (bytes > 0) os << " " << axis << " " << mib(bytes);
  os << "\n";
  const std::string over = memory_plan_overflow(plan, cfg);
  if (!over.empty())
    os << "verdict: does not fit: " << over << "\n";
  else if (plan.cap_bytes > 0)
    os << "verdict: fits train.max_memory_mb = " << cfg.train.max_memory_mb << " (largest rank "
       << mib(plan.largest().total_slow) << " MiB)\n";
  else
    os << "verdict: no train.max_memory_mb set; the largest rank needs "
       << mib(plan.largest().total_slow) << " MiB\n";
  return os.str();
}

std::string memory_plan_json(const MemoryPlan& plan) {
  std::ostringstream os;
  os << "{\"cap_bytes\":" << static_cast<int64_t>(plan.cap_bytes)
     << ",\"fits\":" << (plan.fits() ? "true" : "false") << ",\"ranks\":[";
  for (size_t i = 0; i < plan.ranks.size(); ++i) {
    const RankMemoryPlan& r = plan.ranks[i];
    os << (i ? "," : "") << "{\"rank\":" << r.rank << ",\"pp_rank\":" << r.pp_rank
       << ",\"dp_rank\":" << r.dp_rank << ",\"sp_rank\":" << r.sp_rank << ",\"peak_bytes\":{";
    for (int k = 0; k < kNumMemCategories; ++k)
      os << "\"" << mem_category_name(static_cast<MemCategory>(k))
         << "\":" << static_cast<int64_t>(r.peak[k]) << ",";
    os << "\"total\":" << static_cast<int64_t>(r.total_peak)
       << "},\"io_slow\":" << static_cast<int64_t>(r.io_slow)
       << ",\"total_slow\":" << static_cast<int64_t>(r.total_slow) << ",\"comm_bytes_per_step\":{";
    bool first = true;
    for (const auto& [axis, bytes] : r.comm_bytes) {
      os << (first ? "" : ",") << "\"" << axis << "\":" << static_cast<int64_t>(bytes);
      first = false;
    }
    os << "}}";
  }
  os << "]}\n";
  return os.str();
}

std::string memory_plan_overflow(const MemoryPlan& plan, const JobConfig& cfg) {
  if (plan.fits()) return "";
  const RankMemoryPlan& worst = plan.largest();
  const MemCategory cat = largest_category(worst);
  std::string msg = "rank " + std::to_string(worst.rank) + " needs " + mib(worst.total_slow) +
                    " MiB, over train.max_memory_mb = " + std::to_string(cfg.train.max_memory_mb) +
                    "; " + mem_category_name(cat) + " overflows (" +
                    mib(worst.peak[static_cast<int>(cat)]) + " MiB, the largest category)";
  std::string fits;
  for (const Variant& v : variants(cfg)) {
    JobConfig j = cfg;
    v.apply(j);
    try {
      const MemoryPlan alt = plan_memory(j);
      if (alt.fits())
        fits += std::string(fits.empty() ? "" : "; ") + v.what + " (" +
                mib(alt.largest().total_slow) + " MiB)";
    } catch (const InputError&) {  // a layout the trainer would refuse is no advice
    }
  }
  return msg + (fits.empty() ? "; no single change tried fits (zero_stage, dp, sp, offload.policy, "
                               "micro_batch): raise the cap or shrink the model"
                             : "; would fit: " + fits);
}

}  // namespace strata
