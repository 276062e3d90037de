#pragma once
// log.trace_steps: the trace recorder (core/trace.h) runs during the chosen steps only, and after
// each of them <run_dir>/trace_r<rank>.json is rewritten with every traced step so far, so a run
// stopped later still leaves the trace of what it traced.
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "core/trace.h"

namespace strata {

class StepTracer {
 public:
  StepTracer(const std::vector<int64_t>& steps, std::string path, int rank);
  ~StepTracer();  // the recorder is left off

  // Turns the recorder on for a chosen step (off for any other); returns whether it traces.
  bool begin_step(int64_t step);
  // Ends a traced step: its span, then the file. A no-op for a step that was not traced.
  void end_step(int64_t step);
  bool tracing() const { return tracing_; }
  const std::string& path() const { return path_; }

 private:
  std::set<int64_t> steps_;
  std::string path_;
  int rank_;
  bool tracing_ = false;
  double step_t0_ = 0;
  std::vector<TraceSpan> kept_;  // the traced steps so far
};

// <run_dir>/trace_r00001.json
std::string trace_file_path(const std::string& run_dir, int rank);

}  // namespace strata
