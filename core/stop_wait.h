#pragma once
// Waits that a stop signal may not outlast (swap I/O, the tier's copier). A wait checks for a
// stop every 100 ms; once one is pending it allows kStopGraceSeconds more, since a request in
// flight normally lands in milliseconds and the stop is then honoured at the next block
// boundary. A request still out after that is stuck (a hung device or file system): the wait
// cannot be abandoned by unwinding, because the kernel or an I/O thread may still write into the
// buffer, so the process ends instead with 128+signal. Nothing is saved then; the last committed
// checkpoint stands, and the swap file is removed as stale at the next start.
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "core/stop.h"

namespace strata {

constexpr double kStopGraceSeconds = 5.0;

// Logs what was being waited for and ends the process with 128 + sig.
[[noreturn]] void exit_stuck_after_stop(int sig, const char* what);

template <class Done>
void wait_or_stop(std::condition_variable& cv, std::unique_lock<std::mutex>& lk, Done done,
                  const char* what) {
  using Clock = std::chrono::steady_clock;
  Clock::time_point stop_seen{};
  while (!cv.wait_for(lk, std::chrono::milliseconds(100), done)) {
    const int sig = stop_signal();
    if (!sig) continue;
    const auto now = Clock::now();
    if (stop_seen == Clock::time_point{}) stop_seen = now;
    if (std::chrono::duration<double>(now - stop_seen).count() >= kStopGraceSeconds)
      exit_stuck_after_stop(sig, what);
  }
}

}  // namespace strata
