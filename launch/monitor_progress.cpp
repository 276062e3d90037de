#include "launch/monitor_progress.h"

#include <cmath>
#include <cstdio>

#include "core/log.h"

namespace strata {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  char buf[32];
  if (s < 1) {
    std::snprintf(buf, sizeof buf, "%.0fms", s * 1e3);
  } else if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  } else {
    const auto t = static_cast<int64_t>(std::llround(s));
    if (t < 3600)
      std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(t / 60),
                    static_cast<long long>(t % 60));
    else if (t < 86400)
      std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(t / 3600),
                    static_cast<long long>(t % 3600 / 60));
    else
      std::snprintf(buf, sizeof buf, "%lldd%02lldh", static_cast<long long>(t / 86400),
                    static_cast<long long>(t % 86400 / 3600));
  }
  return buf;
}

void StepClock::step_done(double seconds) {
  if (steps_++ == 0) first_ = seconds;
  sum_ += seconds;
}

double StepClock::mean_step() const {
  if (steps_ == 0) return NAN;
  if (steps_ == 1) return first_;
  return (sum_ - first_) / static_cast<double>(steps_ - 1);
}

double StepClock::eta(int64_t remaining) const {
  return mean_step() * static_cast<double>(remaining > 0 ? remaining : 0);
}

ProgressLog::ProgressLog(std::string what, std::string unit, int64_t total, double interval_s,
                         Publish publish, bool uniform)
    : what_(std::move(what)),
      unit_(std::move(unit)),
      total_(total > 0 ? total : 1),
      interval_s_(interval_s),
      publish_(std::move(publish)),
      uniform_(uniform),
      start_(Clock::now()),
      last_(start_) {}

void ProgressLog::update(int64_t done, const std::string& detail) {
  const double spent = seconds_since(start_);
  char pct[16];
  std::snprintf(pct, sizeof pct, "%.0f%%", 100.0 * static_cast<double>(done) / total_);
  std::string line = what_ + ": " + std::to_string(done) + "/" + std::to_string(total_) + " " +
                     unit_ + " (" + pct + "), " + format_duration(spent);
  if (uniform_ && done > 0 && done < total_)
    line += ", eta " +
            format_duration(spent / static_cast<double>(done) * static_cast<double>(total_ - done));
  if (!detail.empty()) line += " | " + detail;
  if (publish_) publish_(line);
  if (seconds_since(last_) < interval_s_) return;
  last_ = Clock::now();
  log_info(line);
}

}  // namespace strata
