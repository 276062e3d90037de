#pragma once
// Everything that watches a run, behind one object the trainer calls at a few points: the step
// clock (elapsed, ETA), progress lines, the trace of log.trace_steps, TensorBoard event files
// (log.tensorboard_dir) and the run monitor (monitor.port): heartbeats from every rank and, on
// rank 0, the board and its HTTP server.
//
// Nothing here waits on another rank. A rank's heartbeat is sent (and rank 0 collects them) at
// unit-pass boundaries, step ends and from inside the collective watchdog's waits, so a rank
// blocked on a stalled peer keeps reporting what it waits for while the stalled one goes silent.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "launch/job_config.h"
#include "launch/monitor_board.h"
#include "launch/monitor_progress.h"
#include "launch/monitor_report.h"
#include "launch/train_hooks.h"
#include "parallel/comm.h"
#include "parallel/flight_recorder.h"

namespace strata {

class ActivationStore;
class HeartbeatChannel;
class MonitorServer;
class StepTracer;
class TensorBoardWriter;
struct StepResult;

struct HubContext {
  const JobConfig* cfg = nullptr;
  Comm* world = nullptr;             // every rank of the job
  std::vector<const Comm*> comms;    // their bytes are reported per axis
  ActivationStore* store = nullptr;  // its swap tier is reported
  int64_t parameters = 0;
};

class MonitorHub final : public PassObserver {
 public:
  // Collective over the world when monitor.port is set (the heartbeat channel is made here).
  // InputError when the monitor cannot listen or the TensorBoard file cannot be created.
  explicit MonitorHub(const HubContext& c);
  ~MonitorHub() override;
  MonitorHub(const MonitorHub&) = delete;
  MonitorHub& operator=(const MonitorHub&) = delete;

  // Whether the trainer's unit hooks should report passes here (a trace or the monitor is on).
  bool wants_passes() const;
  void begin_step(int64_t step);
  void pass_begun(int64_t unit, UnitPass pass) override;
  void pass_done(int64_t unit, UnitPass pass) override;
  // Right after the step: the clock and the trace.
  void step_timed(const StepResult& r);
  // "elapsed 1m05s | eta 2m10s" for the step line.
  std::string progress_text() const;
  double elapsed() const { return clock_.elapsed(); }
  double eta() const;
  // After the step's evaluation (val_loss NaN when none): TensorBoard, the board, a heartbeat.
  void step_finished(const StepResult& r, double val_loss);
  // A progress log for long work that also tells the monitor this rank is doing it.
  ProgressLog progress(RankState state, std::string what, std::string unit, int64_t total,
                       bool uniform = true);
  void set_activity(RankState state, std::string activity);
  // The last heartbeat: this rank is done.
  void finish();
  int monitor_port() const;  // the port served (rank 0 with monitor.port set), else 0

 private:
  void start_monitor(const HubContext& c);
  void tick(bool force);
  void on_wait(const FlightRecord& r);
  RankReport own_report(double now) const;
  std::string unit_label(int64_t unit) const;

  const JobConfig& cfg_;
  int rank_ = 0;
  int64_t step_ = 0;
  std::vector<const Comm*> comms_;
  ActivationStore* store_ = nullptr;
  StepClock clock_;
  std::unique_ptr<StepTracer> tracer_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
  bool monitoring_ = false;
  std::unique_ptr<HeartbeatChannel> channel_;  // ranks > 1 only
  std::unique_ptr<RunBoard> board_;            // rank 0 only
  std::unique_ptr<MonitorServer> server_;      // rank 0 only
  // This rank's report, kept current by the calls above.
  RankState phase_ = RankState::starting;
  RankState state_ = RankState::starting;
  std::string activity_ = "starting";
  double since_ = 0, last_tick_ = 0, last_sent_ = 0;
  bool changed_ = true;
  uint64_t waiting_for_ = 0;  // flight record id of the wait reported
  double last_step_s_ = 0, last_tps_ = 0, last_flops_ = 0, swap_bw_ = 0;
  int64_t swap_written_at_step_ = 0;
  std::map<std::pair<int64_t, int>, double> open_passes_;  // (unit, pass) -> trace start
};

}  // namespace strata
