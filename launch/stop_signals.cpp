#include "launch/stop_signals.h"

#include <pthread.h>
#include <signal.h>

#include <ctime>

namespace strata {

namespace {
sigset_t stop_set() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGTERM);
  sigaddset(&s, SIGINT);
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
      if (sig > 0) signal_.store(sig);
    }
  });
}

StopSignalWatcher::~StopSignalWatcher() {
  stop_.store(true);
  thread_.join();
}

}  // namespace strata
