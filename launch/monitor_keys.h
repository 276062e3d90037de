#pragma once
// The rules of the keys that watch a run (log.progress_s, log.trace_steps, monitor.port,
// monitor.bind): one place, used by the job-file parser (which puts the key's file:line in
// front). Whether log.tensorboard_dir is a writable directory is a property of the machine,
// checked before step 1 with the run's other output paths.
#include <optional>

#include "launch/job_config.h"
#include "launch/pipeline_keys.h"

namespace strata {

// Most steps log.trace_steps may name: each traced step keeps its events in memory until the
// last one is written, so a long list is a mistake, not a profile.
inline constexpr size_t kMaxTraceSteps = 64;

// The first broken rule, or nothing.
std::optional<KeyProblem> monitor_key_problem(const JobConfig& cfg);

}  // namespace strata
