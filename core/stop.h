#pragma once
// The process-wide stop request. SIGTERM/SIGINT/SIGHUP are received by one watcher thread
// (launch/stop_signals.h), which records the signal here; long-running work (training and
// evaluation at block boundaries, checkpoint save and load between tensors, swap I/O waits) reads
// it, so a stop is honoured within one block's compute. Work that is abandoned throws
// StopRequested, which the CLI turns into exit 128+signal.
#include <string>

#include "core/error.h"

namespace strata {

// The stop signal received so far, 0 if none. Lock-free; safe from any thread.
int stop_signal();
void set_stop_signal(int sig);
void clear_stop_signal();  // tests only

class StopRequested : public StrataError {
 public:
  StopRequested(int sig, const std::string& where);
  int signal() const { return signal_; }

 private:
  int signal_;
};

// Throws StopRequested naming `where` ("loading checkpoint step_00000010") when a stop signal
// has been received.
void throw_if_stop_requested(const std::string& where);

}  // namespace strata
