#pragma once
// SIGTERM / SIGINT handling for training: the job finishes its step, saves a checkpoint and
// exits 128+signal. The signals are blocked in every thread (call block_stop_signals() before
// any thread starts: threads inherit the mask) and received by one watcher thread with
// sigtimedwait, so an asynchronous signal never interrupts OpenMP or oneDNN worker threads
// (delivering it to them corrupted the heap under load).
#include <atomic>
#include <thread>

namespace strata {

void block_stop_signals();

class StopSignalWatcher {
 public:
  StopSignalWatcher();   // starts the watcher thread
  ~StopSignalWatcher();  // stops it
  StopSignalWatcher(const StopSignalWatcher&) = delete;
  StopSignalWatcher& operator=(const StopSignalWatcher&) = delete;
  // The signal received so far (SIGTERM or SIGINT), 0 if none.
  int received() const { return signal_.load(); }

 private:
  std::atomic<int> signal_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace strata
