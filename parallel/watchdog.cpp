#include "parallel/watchdog.h"

#include <algorithm>

#include "core/stop.h"

namespace strata {

const char* watch_phase_name(WatchPhase p) {
  switch (p) {
    case WatchPhase::startup:
      return "startup";
    case WatchPhase::train:
      return "train";
    case WatchPhase::checkpoint:
      return "checkpoint";
  }
  return "?";
}

Watchdog& Watchdog::instance() {
  static Watchdog w;
  return w;
}

double Watchdog::grace() const {
  return grace_s_ >= 0 ? grace_s_ : std::clamp(timeout_s_, 1.0, 5.0);
}

std::string Watchdog::flight_path() const {
  if (run_dir_.empty()) return "";
  return run_dir_ + "/flight_" + std::to_string(world_rank_) + ".jsonl";
}

double Watchdog::deadline() const {
  // A requested stop must end the job within the plain deadline, whatever the phase.
  if (stop_signal() != 0) return timeout_s_;
  switch (phase_) {
    case WatchPhase::startup:
      return timeout_s_ * kStartupFactor;
    case WatchPhase::checkpoint:
      return timeout_s_ * kCheckpointFactor;
    case WatchPhase::train:
      break;
  }
  return timeout_s_;
}

bool Watchdog::write_flight() const {
  const std::string path = flight_path();
  return !path.empty() && recorder_.write(path, world_rank_);
}

}  // namespace strata
