#pragma once
// The rules tying the pipeline keys (parallel.schedule, virtual_stages, schedule_file,
// pp_layers) to each other, to parallel.pp and to model.n_layers: one place, used by the job-file
// parser (which puts the key's file:line in front) and by plan_pipeline (for a JobConfig built
// in code).
#include <optional>
#include <string>

#include "launch/job_config.h"

namespace strata {

struct KeyProblem {
  std::string key;   // the key the message is about ("parallel.pp_layers")
  std::string what;  // what is wrong, naming the other keys and the numbers
};

inline constexpr int64_t kMaxVirtualStages = 64;

// The first broken rule, or nothing. Range rules on the keys themselves come first, then the
// schedule's need for virtual stages, then the stage count against the blocks, then pp_layers.
// The schedule file's own shape is checked when it is loaded (plan_pipeline).
std::optional<KeyProblem> pipeline_key_problem(const JobConfig& cfg);

}  // namespace strata
