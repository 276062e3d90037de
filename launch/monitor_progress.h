#pragma once
// Progress of a run for the log and the monitor: the elapsed time and the ETA on the step line,
// and progress lines for work that can take long between two step lines (an evaluation over
// many batches, a checkpoint save on slow storage).
#include <cstdint>
#include <functional>
#include <string>

#include "core/clock.h"

namespace strata {

// "850ms", "12.3s", "4m05s", "2h01m", "3d04h": short enough for a log line, exact enough to plan.
std::string format_duration(double seconds);

// The run's clock: elapsed time since the run started and the ETA of its remaining steps from
// the mean step time of this process. The first step of a process (first touch of every buffer,
// the offload planner) is left out of the mean once another step was timed.
class StepClock {
 public:
  StepClock() : start_(Clock::now()) {}
  void step_done(double seconds);
  double elapsed() const { return seconds_since(start_); }
  // Seconds for `remaining` more steps; NaN before the first step was timed.
  double eta(int64_t remaining) const;
  double mean_step() const;  // NaN before the first step was timed

 private:
  Clock::time_point start_;
  int64_t steps_ = 0;
  double first_ = 0, sum_ = 0;
};

// "evaluation: 12/40 batches (30%), 3.2s, eta 7.5s" lines, at most one per `interval_s` (the
// first after interval_s too, so quick work prints nothing; 0 prints every update). Every update
// is also handed to `publish` (the monitor's view of what the rank is doing), printed or not.
class ProgressLog {
 public:
  using Publish = std::function<void(const std::string& activity)>;
  // `uniform`: the units take about the same time each, so an ETA is worth printing.
  ProgressLog(std::string what, std::string unit, int64_t total, double interval_s,
              Publish publish = {}, bool uniform = true);
  // `done` of total are complete; `detail` is appended to the line ("shard written, 12 MiB").
  void update(int64_t done, const std::string& detail = "");

 private:
  std::string what_, unit_;
  int64_t total_;
  double interval_s_;
  Publish publish_;
  bool uniform_;
  Clock::time_point start_, last_;
};

}  // namespace strata
