#pragma once
// The collective watchdog's settings, shared by every communicator of the process: every
// collective and point-to-point wait of the MPI backend has a deadline (parallel/mpi_watchdog.h
// is the poll loop that enforces it), so a rank that died, was stopped or is stuck in computation
// makes the others exit with a message naming it instead of waiting forever.
//
// The deadline is train.collective_timeout_s, times a factor in the phases where a rank may
// legitimately sit long outside communication: start-up and the first step (sgemm peak probe,
// first touch of every buffer, loading a checkpoint) and checkpoint I/O. Once a stop has been
// requested (SIGTERM before a time limit, or from mpirun after a peer died) no factor applies, so
// the stop's checkpoint cannot wait longer than the plain deadline.
//
// Process-wide, like the stop request of core/stop.h: one process is one rank, and its
// communicators share one clock, one phase and one flight recorder. Main thread only.
#include <cstdint>
#include <functional>
#include <string>

#include "core/error.h"
#include "parallel/flight_recorder.h"

namespace strata {

enum class WatchPhase { startup, train, checkpoint };
const char* watch_phase_name(WatchPhase p);

// Thrown by a wait whose deadline passed. The communicator it came from is unusable afterwards
// (its operation is abandoned, not cancelled): the process should print it and exit without
// another collective (the CLI aborts the job).
class CollectiveTimeout : public StrataError {
 public:
  explicit CollectiveTimeout(const std::string& what) : StrataError(what) {}
};

class Watchdog {
 public:
  static constexpr double kStartupFactor = 5;     // start-up and the first step
  static constexpr double kCheckpointFactor = 5;  // saving or loading a checkpoint

  static Watchdog& instance();

  void set_timeout(double seconds) { timeout_s_ = seconds; }
  double timeout() const { return timeout_s_; }
  // How long a timed-out rank waits for the others to report where they are stuck before it
  // names the silent ones; < 0 (the default): the timeout, clamped to [1, 5] s.
  void set_grace(double seconds) { grace_s_ = seconds; }
  double grace() const;
  // Where flight_<rank>.jsonl goes; "" (the default): nowhere.
  void set_run_dir(std::string dir) { run_dir_ = std::move(dir); }
  std::string flight_path() const;
  void set_world_rank(int r) { world_rank_ = r; }
  int world_rank() const { return world_rank_; }

  void set_step(int64_t s) { step_ = s; }
  int64_t step() const { return step_; }
  void set_phase(WatchPhase p) { phase_ = p; }
  WatchPhase phase() const { return phase_; }
  // The deadline of a wait that starts now, in seconds.
  double deadline() const;

  // Set once a wait timed out: later waits fail at once (the job is going down; a destructor
  // waiting on an abandoned operation must not start a second round of deadlines).
  bool fired() const { return fired_; }
  void set_fired() { fired_ = true; }
  void clear_fired() { fired_ = false; }  // tests only

  FlightRecorder& recorder() { return recorder_; }

  // Called again and again while a wait lasts past its first spin, with the operation waited
  // for: the run monitor (launch/monitor.h) sends and collects heartbeats there, so a rank
  // blocked on a stalled peer still shows what it waits for. Main thread; the hook must not
  // throw, nor wait on a communicator of the trainer.
  using WaitHook = std::function<void(const FlightRecord&)>;
  void set_wait_hook(WaitHook hook) { wait_hook_ = std::move(hook); }
  void while_waiting(const FlightRecord& r) const {
    if (wait_hook_) wait_hook_(r);
  }
  // Writes the flight recorder to flight_path() (if set); false if it could not.
  bool write_flight() const;

 private:
  Watchdog() = default;
  double timeout_s_ = 120;
  double grace_s_ = -1;
  std::string run_dir_;
  int world_rank_ = 0;
  int64_t step_ = 0;
  WatchPhase phase_ = WatchPhase::startup;
  bool fired_ = false;
  FlightRecorder recorder_;
  WaitHook wait_hook_;
};

// Sets the phase for a scope and restores the previous one (checkpoint save and load).
class WatchPhaseScope {
 public:
  explicit WatchPhaseScope(WatchPhase p) : prev_(Watchdog::instance().phase()) {
    Watchdog::instance().set_phase(p);
  }
  ~WatchPhaseScope() { Watchdog::instance().set_phase(prev_); }
  WatchPhaseScope(const WatchPhaseScope&) = delete;
  WatchPhaseScope& operator=(const WatchPhaseScope&) = delete;

 private:
  WatchPhase prev_;
};

}  // namespace strata
