#include "launch/pipeline_keys.h"

namespace strata {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

// Interleaving needs several stages per rank, and the other generators place exactly one; a
// schedule file brings its own placement, so then the schedule key is not consulted.
std::optional<KeyProblem> virtual_stage_problem(const ParallelConfig& p) {
  if (!p.schedule_file.empty()) return std::nullopt;
  if (p.schedule == "interleaved" && p.virtual_stages < 2)
    return KeyProblem{"parallel.virtual_stages",
                      "parallel.schedule interleaved needs parallel.virtual_stages >= 2 (stages "
                      "per pipeline rank), got " +
                          str(p.virtual_stages)};
  if (p.schedule != "interleaved" && p.virtual_stages != 1)
    return KeyProblem{"parallel.virtual_stages",
                      "parallel.schedule " + p.schedule +
                          " holds one stage per pipeline rank: parallel.virtual_stages must be 1, "
                          "got " +
                          str(p.virtual_stages) + " (interleaved runs several)"};
  return std::nullopt;
}

std::optional<KeyProblem> pp_layers_problem(const JobConfig& cfg, int64_t stages) {
  const std::vector<int64_t>& layers = cfg.parallel.pp_layers;
  if (layers.empty()) return std::nullopt;  // placed by cost
  const auto n = static_cast<int64_t>(layers.size());
  if (n != stages)
    return KeyProblem{"parallel.pp_layers",
                      "expected parallel.pp * parallel.virtual_stages = " + str(cfg.parallel.pp) +
                          " * " + str(cfg.parallel.virtual_stages) + " = " + str(stages) +
                          " entries (blocks per stage), got " + str(n)};
  for (int64_t i = 0; i < n; ++i)
    if (layers[static_cast<size_t>(i)] < 1)
      return KeyProblem{"parallel.pp_layers", "entry " + str(i) + " is " +
                                                  str(layers[static_cast<size_t>(i)]) +
                                                  ": every stage holds at least one block"};
  int64_t sum = 0;
  bool overflow = false;  // only absurd entries (a JobConfig built in code) get here
  for (int64_t v : layers) overflow = overflow || __builtin_add_overflow(sum, v, &sum);
  if (overflow || sum != cfg.model.n_layers)
    return KeyProblem{"parallel.pp_layers",
                      "the entries sum to " + (overflow ? "more than 2^63" : str(sum)) +
                          " blocks, but model.n_layers = " + str(cfg.model.n_layers)};
  return std::nullopt;
}

}  // namespace

std::optional<KeyProblem> pipeline_key_problem(const JobConfig& cfg) {
  const ParallelConfig& p = cfg.parallel;
  if (p.virtual_stages < 1 || p.virtual_stages > kMaxVirtualStages)
    return KeyProblem{
        "parallel.virtual_stages",
        "expected a value in [1, " + str(kMaxVirtualStages) + "], got " + str(p.virtual_stages)};
  if (auto problem = virtual_stage_problem(p)) return problem;
  const int64_t stages = p.pp * p.virtual_stages;  // pp <= 2^20 (job-file range): no overflow
  if (stages > cfg.model.n_layers)
    return KeyProblem{"parallel.pp",
                      "parallel.pp * parallel.virtual_stages = " + str(p.pp) + " * " +
                          str(p.virtual_stages) + " = " + str(stages) +
                          " stages, more than model.n_layers = " + str(cfg.model.n_layers) +
                          " (every stage holds at least one block)"};
  return pp_layers_problem(cfg, stages);
}

}  // namespace strata
