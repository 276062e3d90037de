#include "launch/memory_estimate.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>

#include "core/error.h"
#include "launch/pipeline_plan.h"
#include "models/model.h"

namespace strata {

namespace {

constexpr double kF32 = 4;

std::string gib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

// cgroup v2 memory.max ("max" = none), else v1's limit; 0 when there is none.
double cgroup_limit_bytes() {
  for (const char* path :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(path);
    std::string text;
    if (in >> text && text != "max") {
      try {
        return std::stod(text);
      } catch (const std::exception&) {
      }
    }
  }
  return 0;
}

// The parameters of the pipeline rank holding the fewest: every rank holds at least that many
// (with one stage, the whole model). The model's layout is built without allocating anything.
double parameter_count(const JobConfig& c) {
  if (c.parallel.pp == 1) return static_cast<double>(c.model.num_parameters());
  const PipelinePlan plan = plan_pipeline(c);
  const bool vocab = c.parallel.vocab_parallel;
  const int64_t units = c.model.n_layers + 2 + (vocab && !c.model.tie_embeddings ? 1 : 0);
  double fewest = -1;
  for (int r = 0; r < plan.pp; ++r) {
    VocabSplit split;
    if (vocab) split = VocabSplit{true, r, plan.pp};
    const Model layout(c.model, std::vector<bool>(static_cast<size_t>(units), false), split);
    std::vector<bool> held(static_cast<size_t>(units), false);
    for (int s : plan.stages_of_rank(r))
      for (int64_t u = plan.stages[s].first_unit; u < plan.stages[s].end_unit; ++u)
        held[static_cast<size_t>(u)] = !vocab || u != 0;
    if (vocab) held.front() = held.back() = true;  // every rank's rows of the embedding and head
    double n = 0;
    for (int64_t u = 0; u < units; ++u)
      if (held[static_cast<size_t>(u)]) n += static_cast<double>(layout.units()[u].numel());
    fewest = fewest < 0 ? n : std::min(fewest, n);
  }
  return fewest;
}

}  // namespace

MemoryEstimate estimate_rank_memory(const JobConfig& c) {
  const double P = parameter_count(c);
  const double replicas = static_cast<double>(c.parallel.dp * c.parallel.sp);
  const int64_t stage = c.parallel.zero_stage;
  const double states = c.optim.name == "adamw" ? 2 : 1;
  MemoryEstimate e;
  e.params = P * kF32 / (stage >= 3 ? replicas : 1);
  e.grads = P * kF32 / (stage >= 2 ? replicas : 1);
  e.optimizer = states * P * kF32 / (stage >= 1 ? replicas : 1);
  // One micro-batch's tokens on this rank, times the model width: the residual stream and its
  // next value always exist; recompute also holds every block's input, and keep at least as
  // many bytes per block (its two norms' saved rows, bf16 or fp32).
  const double N = static_cast<double>(c.train.micro_batch) *
                   static_cast<double>(c.data.seq_len / c.parallel.sp);
  const bool swaps = c.offload.policy == "swap" || c.offload.policy == "auto";
  // With several stages a rank may hold few blocks: only the streams count.
  const double rows = swaps || c.parallel.pp > 1 ? 3 : static_cast<double>(c.model.n_layers + 2);
  e.activations = kF32 * N * static_cast<double>(c.model.dim) * rows;
  // Every rank loads the whole global batch (inputs and targets, int32), plus its share.
  e.batch_tokens =
      2 * 2 * 4.0 * static_cast<double>(c.train.global_batch) * static_cast<double>(c.data.seq_len);
  return e;
}

double machine_memory_bytes() {
  const double physical =
      static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGESIZE));
  const double cgroup = cgroup_limit_bytes();
  return cgroup > 0 ? std::min(physical, cgroup) : physical;
}

void check_job_fits_memory(const JobConfig& c, int ranks_on_node) {
  const MemoryEstimate e = estimate_rank_memory(c);
  const double cap = static_cast<double>(c.train.max_memory_mb) * 1024 * 1024;
  const double machine = machine_memory_bytes() / std::max(1, ranks_on_node);
  const bool over_cap = cap > 0 && e.tracked() > cap;
  if (!over_cap && e.total() <= machine) return;
  // Name the keys behind the largest part of the estimate.
  const double weights = e.params + e.grads + e.optimizer;
  std::string keys;
  if (weights >= e.activations && weights >= e.batch_tokens)
    keys = "the model size (model.vocab_size, model.dim, model.n_layers, model.ffn_dim: " +
           std::to_string(c.model.num_parameters()) +
           " parameters), or shard it with parallel.zero_stage and parallel.dp";
  else if (e.activations >= e.batch_tokens)
    keys = "train.micro_batch (" + std::to_string(c.train.micro_batch) + ") x data.seq_len (" +
           std::to_string(c.data.seq_len) + ") x model.dim (" + std::to_string(c.model.dim) +
           "), or use offload.policy swap/recompute or parallel.sp";
  else
    keys = "train.global_batch (" + std::to_string(c.train.global_batch) + ") x data.seq_len (" +
           std::to_string(c.data.seq_len) + ")";
  const std::string have =
      over_cap ? "train.max_memory_mb allows " + gib(cap)
               : "this machine has " + gib(machine * std::max(1, ranks_on_node)) + " for " +
                     std::to_string(std::max(1, ranks_on_node)) + " rank(s) on the node";
  throw InputError(c.source + ": the job needs at least " +
                   gib(over_cap ? e.tracked() : e.total()) + " per rank (parameters " +
                   gib(e.params) + ", gradients " + gib(e.grads) + ", optimizer " +
                   gib(e.optimizer) + ", activations " + gib(e.activations) + ", token batch " +
                   gib(e.batch_tokens) + ") but " + have + ": reduce " + keys);
}

}  // namespace strata
