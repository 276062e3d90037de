#include "launch/trace_steps.h"

#include <cstdio>

#include "core/atomic_file.h"
#include "core/log.h"

namespace strata {

std::string trace_file_path(const std::string& run_dir, int rank) {
  char name[32];
  std::snprintf(name, sizeof name, "trace_r%05d.json", rank);
  return run_dir + "/" + name;
}

StepTracer::StepTracer(const std::vector<int64_t>& steps, std::string path, int rank)
    : steps_(steps.begin(), steps.end()), path_(std::move(path)), rank_(rank) {}

StepTracer::~StepTracer() { TraceRecorder::instance().set_active(false); }

bool StepTracer::begin_step(int64_t step) {
  TraceRecorder& rec = TraceRecorder::instance();
  if (tracing_) rec.take();  // a step stopped part-way: its spans are not kept
  tracing_ = steps_.count(step) > 0;
  rec.set_active(tracing_);
  step_t0_ = trace_now_us();
  return tracing_;
}

void StepTracer::end_step(int64_t step) {
  if (!tracing_) return;
  TraceRecorder& rec = TraceRecorder::instance();
  rec.set_active(false);
  tracing_ = false;
  std::vector<TraceSpan> spans = rec.take();
  spans.push_back(TraceSpan{TraceTrack::step, "step " + std::to_string(step), step_t0_,
                            trace_now_us(), "\"step\":" + std::to_string(step)});
  kept_.insert(kept_.end(), spans.begin(), spans.end());
  write_file_atomic(path_, trace_event_json(kept_, rank_, "rank " + std::to_string(rank_)));
  if (step == *steps_.rbegin())
    log_info("trace: steps written to " + path_ + " (open in ui.perfetto.dev or chrome://tracing)");
}

}  // namespace strata
