#include "core/stop.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "core/stop_wait.h"

namespace strata {

namespace {
std::atomic<int> g_stop_signal{0};
}  // namespace

int stop_signal() { return g_stop_signal.load(std::memory_order_relaxed); }
void set_stop_signal(int sig) { g_stop_signal.store(sig, std::memory_order_relaxed); }
void clear_stop_signal() { g_stop_signal.store(0, std::memory_order_relaxed); }

StopRequested::StopRequested(int sig, const std::string& where)
    : StrataError("stopped by signal " + std::to_string(sig) + " while " + where,
                  static_cast<ExitCode>(128 + sig)),
      signal_(sig) {}

void throw_if_stop_requested(const std::string& where) {
  if (const int sig = stop_signal()) throw StopRequested(sig, where);
}

void exit_stuck_after_stop(int sig, const char* what) {
  char msg[256];
  std::snprintf(msg, sizeof msg,
                "stopped by signal %d while waiting for %s, which did not finish within %.0f s "
                "of the stop: exiting without a checkpoint (the last committed one stands)",
                sig, what, kStopGraceSeconds);
  std::fprintf(stderr, "strata: error: %s\n", msg);
  std::fflush(nullptr);
  std::_Exit(128 + sig);
}

}  // namespace strata
