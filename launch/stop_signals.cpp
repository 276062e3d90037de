#include "launch/stop_signals.h"

#include <pthread.h>
#include <signal.h>

#include <ctime>

#include "core/stop.h"

namespace strata {

namespace {
// SIGHUP (the terminal or ssh session went away) stops the run like SIGTERM, so swap files go and
// a checkpoint is written, unless it is ignored (nohup): a blocked signal is queued even when
// ignored, so it must then stay out of the set.
bool hangup_ignored() {
  static const bool ignored = [] {
    struct sigaction current {};
    return sigaction(SIGHUP, nullptr, &current) == 0 && current.sa_handler == SIG_IGN;
  }();
  return ignored;
}

sigset_t stop_set() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGTERM);
  sigaddset(&s, SIGINT);
  if (!hangup_ignored()) sigaddset(&s, SIGHUP);
  return s;
}
}  // namespace

void block_stop_signals() {
  const sigset_t s = stop_set();
  pthread_sigmask(SIG_BLOCK, &s, nullptr);
}

StopSignalWatcher::StopSignalWatcher() {
  thread_ = std::thread([this] {
    const sigset_t s = stop_set();
    const timespec tick{0, 100'000'000};  // 100 ms: how soon the destructor is noticed
    while (!stop_.load()) {
      const int sig = sigtimedwait(&s, nullptr, &tick);
      if (sig > 0) {
        signal_.store(sig);
        set_stop_signal(sig);
      }
    }
  });
}

StopSignalWatcher::~StopSignalWatcher() {
  stop_.store(true);
  thread_.join();
}

}  // namespace strata
