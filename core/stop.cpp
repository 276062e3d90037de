#include "core/stop.h"

#include <atomic>

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

}  // namespace strata
