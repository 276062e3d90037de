#pragma once
// The run monitor's view of the job on rank 0: the run's shape, its step history and the latest
// report of every rank. The training thread writes it; the monitor's server thread copies a
// snapshot out under the lock and renders from the copy, so a slow client never holds the lock
// while the trainer waits for it.
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "launch/monitor_report.h"

namespace strata {

struct RunInfo {
  std::string job;  // the job file
  int world = 1;
  int dp = 1, sp = 1, pp = 1;
  int64_t total_steps = 0;
  int64_t parameters = 0;
  double started = 0;  // Unix seconds
};

struct StepPoint {
  int64_t step = 0;
  double loss = 0;
  double val_loss = 0;  // NaN where no evaluation followed the step
  double lr = 0, grad_norm = 0;
  double step_seconds = 0, tokens_per_s = 0, gemm_flops_per_s = 0;
};

struct RankView {
  RankReport report;
  double received = 0;  // rank 0's clock when the report arrived (0: none yet)
};

struct BoardSnapshot {
  RunInfo info;
  std::vector<StepPoint> history;  // oldest first; long runs keep every k-th older point
  std::vector<RankView> ranks;     // by world rank
  double now = 0;                  // when the snapshot was taken (Unix seconds)
  double eta = 0;                  // seconds; NaN before the first step
  double stall_after = 0;          // a rank silent this long is shown stalled
};

// A rank is stalled when it has not reported for this long: a few mean steps, at least
// kMinStallSeconds (heartbeats come at least every half second from a rank that makes progress
// or waits; a rank in a long computation sends none).
inline constexpr double kMinStallSeconds = 5;
double stall_threshold(double mean_step_seconds);

// "stalled" for a silent rank that has not finished, else its reported state.
std::string shown_state(const RankView& v, double now, double stall_after);

class RunBoard {
 public:
  static constexpr size_t kMaxHistory = 2000;

  explicit RunBoard(RunInfo info);
  void add_step(const StepPoint& p, double eta_s, double mean_step_s);
  void report(const RankReport& r, double received_at);
  BoardSnapshot snapshot(double now) const;

 private:
  mutable std::mutex mu_;
  RunInfo info_;
  std::vector<StepPoint> history_;
  std::vector<RankView> ranks_;
  double eta_ = 0, mean_step_ = 0;
};

}  // namespace strata
