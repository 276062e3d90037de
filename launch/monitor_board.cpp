#include "launch/monitor_board.h"

#include <algorithm>
#include <cmath>

namespace strata {

double stall_threshold(double mean_step_seconds) {
  const double m = std::isfinite(mean_step_seconds) ? mean_step_seconds : 0;
  return std::max(kMinStallSeconds, 3 * m);
}

std::string shown_state(const RankView& v, double now, double stall_after) {
  if (v.received <= 0) return "unknown";
  if (v.report.state != RankState::finished && now - v.received > stall_after) return "stalled";
  return rank_state_name(v.report.state);
}

RunBoard::RunBoard(RunInfo info)
    : info_(std::move(info)), ranks_(static_cast<size_t>(std::max(1, info_.world))), eta_(NAN) {
  for (size_t r = 0; r < ranks_.size(); ++r) ranks_[r].report.rank = static_cast<int>(r);
}

void RunBoard::add_step(const StepPoint& p, double eta_s, double mean_step_s) {
  const std::lock_guard<std::mutex> lk(mu_);
  if (history_.size() >= kMaxHistory) {
    // Thin the older half (every other point) so a long run keeps its whole curve.
    std::vector<StepPoint> kept;
    const size_t half = history_.size() / 2;
    for (size_t i = 0; i < history_.size(); ++i)
      if (i >= half || i % 2 == 0) kept.push_back(history_[i]);
    history_ = std::move(kept);
  }
  history_.push_back(p);
  eta_ = eta_s;
  mean_step_ = mean_step_s;
}

void RunBoard::report(const RankReport& r, double received_at) {
  if (r.rank < 0 || r.rank >= static_cast<int>(ranks_.size())) return;
  const std::lock_guard<std::mutex> lk(mu_);
  ranks_[static_cast<size_t>(r.rank)] = RankView{r, received_at};
}

BoardSnapshot RunBoard::snapshot(double now) const {
  const std::lock_guard<std::mutex> lk(mu_);
  return BoardSnapshot{info_, history_, ranks_, now, eta_, stall_threshold(mean_step_)};
}

}  // namespace strata
