#include "launch/monitor_hub.h"

#include <mpi.h>

#include <chrono>
#include <cmath>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "core/memory.h"
#include "core/trace.h"
#include "launch/monitor_channel.h"
#include "launch/monitor_http.h"
#include "launch/monitor_page.h"
#include "launch/monitor_render.h"
#include "launch/tensorboard.h"
#include "launch/trace_steps.h"
#include "launch/trainer.h"
#include "offload/activation_store.h"
#include "parallel/watchdog.h"

namespace strata {

namespace {

constexpr double kMinTickSeconds = 0.05;   // heartbeats at most 20 per second
constexpr double kHeartbeatSeconds = 0.5;  // and at least this often while anything runs

HttpResponse serve(const RunBoard& board, const std::string& path) {
  const BoardSnapshot s = board.snapshot(unix_seconds());
  if (path == "/metrics")
    return {200, "text/plain; version=0.0.4; charset=utf-8", prometheus_text(s)};
  if (path == "/status") return {200, "application/json", status_json(s)};
  if (path == "/" || path == "/index.html")
    return {200, "text/html; charset=utf-8", dashboard_html(status_json(s))};
  return {404, "text/plain; charset=utf-8", "no such page; try /, /status or /metrics\n"};
}

}  // namespace

MonitorHub::MonitorHub(const HubContext& c)
    : cfg_(*c.cfg), rank_(c.world->rank()), comms_(c.comms), store_(c.store) {
  since_ = unix_seconds();
  if (!cfg_.log.trace_steps.empty())
    tracer_ = std::make_unique<StepTracer>(cfg_.log.trace_steps,
                                           trace_file_path(cfg_.train.run_dir, rank_), rank_);
  if (rank_ == 0 && !cfg_.log.tensorboard_dir.empty())
    tensorboard_ = std::make_unique<TensorBoardWriter>(cfg_.log.tensorboard_dir);
  if (cfg_.monitor.port != 0) start_monitor(c);
}

void MonitorHub::start_monitor(const HubContext& c) {
  monitoring_ = true;
  channel_ = HeartbeatChannel::create(*c.world);  // collective: every rank is here
  if (rank_ == 0) {
    RunInfo info{cfg_.source,
                 c.world->size(),
                 static_cast<int>(cfg_.parallel.dp),
                 static_cast<int>(cfg_.parallel.sp),
                 static_cast<int>(cfg_.parallel.pp),
                 cfg_.train.steps,
                 c.parameters,
                 since_};
    board_ = std::make_unique<RunBoard>(std::move(info));
    const RunBoard* board = board_.get();
    try {
      server_ = std::make_unique<MonitorServer>(
          cfg_.monitor.bind, static_cast<int>(cfg_.monitor.port),
          [board](const std::string& path) { return serve(*board, path); });
    } catch (const StrataError& e) {
      throw InputError("monitor.port: " + std::string(e.what()));
    }
    log_info("monitor: serving http://" + cfg_.monitor.bind + ":" +
             std::to_string(server_->port()) + "/ (/status, /metrics)");
  }
  Watchdog::instance().set_wait_hook([this](const FlightRecord& r) { on_wait(r); });
  tick(true);
}

MonitorHub::~MonitorHub() {
  if (monitoring_) Watchdog::instance().set_wait_hook({});
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) (void)channel_.release();  // MPI is gone: nothing may be freed through it
}

bool MonitorHub::wants_passes() const { return tracer_ || monitoring_; }

int MonitorHub::monitor_port() const { return server_ ? server_->port() : 0; }

std::string MonitorHub::unit_label(int64_t u) const {
  const int64_t L = cfg_.model.n_layers;
  if (u == 0) return "embedding";
  if (u <= L) return "block " + std::to_string(u - 1);
  return u == L + 1 ? "head" : "lm head";
}

void MonitorHub::begin_step(int64_t step) {
  if (tracer_) tracer_->begin_step(step);
  open_passes_.clear();
  set_activity(RankState::training, "step " + std::to_string(step));
}

void MonitorHub::pass_begun(int64_t unit, UnitPass pass) {
  if (TraceRecorder::instance().active())
    open_passes_[{unit, static_cast<int>(pass)}] = trace_now_us();
  if (!monitoring_) return;
  activity_ = std::string(unit_pass_name(pass)) + " " + unit_label(unit);
  state_ = phase_;
  since_ = unix_seconds();
  changed_ = true;
  waiting_for_ = 0;
  tick(false);
}

void MonitorHub::pass_done(int64_t unit, UnitPass pass) {
  const auto it = open_passes_.find({unit, static_cast<int>(pass)});
  if (it == open_passes_.end()) return;
  trace_span(TraceTrack::compute, unit_label(unit) + " " + unit_pass_name(pass), it->second,
             "\"unit\":" + std::to_string(unit));
  open_passes_.erase(it);
}

void MonitorHub::step_timed(const StepResult& r) {
  clock_.step_done(r.seconds);
  step_ = r.step;
  if (tracer_) tracer_->end_step(r.step);
}

double MonitorHub::eta() const { return clock_.eta(cfg_.train.steps - step_); }

std::string MonitorHub::progress_text() const {
  return "elapsed " + format_duration(elapsed()) + " | eta " + format_duration(eta());
}

void MonitorHub::step_finished(const StepResult& r, double val_loss) {
  const int64_t written = store_ ? store_->bytes_written() : 0;
  swap_bw_ = r.seconds > 0 ? static_cast<double>(written - swap_written_at_step_) / r.seconds : 0;
  swap_written_at_step_ = written;
  last_step_s_ = r.seconds;
  last_tps_ = r.tokens_per_s;
  last_flops_ = r.gflops * 1e9;
  if (tensorboard_) {
    const MemorySnapshot m = MemoryTracker::instance().snapshot();
    Scalars s = {{"train/loss", r.loss},
                 {"train/lr", r.lr},
                 {"train/grad_norm", r.grad_norm},
                 {"perf/tokens_per_s", r.tokens_per_s},
                 {"perf/step_seconds", r.seconds},
                 {"perf/gemm_gflops", r.gflops},
                 {"memory/peak_total_mib", static_cast<double>(m.total_peak) / (1 << 20)}};
    for (int c = 0; c < kNumMemCategories; ++c)
      s.emplace_back(
          std::string("memory/peak_") + mem_category_name(static_cast<MemCategory>(c)) + "_mib",
          static_cast<double>(m.peak[c]) / (1 << 20));
    if (std::isfinite(val_loss)) s.emplace_back("val/loss", val_loss);
    tensorboard_->add(r.step, s);
  }
  if (!monitoring_) return;
  if (board_) {
    StepPoint p{r.step,      r.loss,    val_loss,       r.lr,
                r.grad_norm, r.seconds, r.tokens_per_s, r.gflops * 1e9};
    board_->add_step(p, eta(), clock_.mean_step());
  }
  changed_ = true;
  tick(true);
}

ProgressLog MonitorHub::progress(RankState state, std::string what, std::string unit, int64_t total,
                                 bool uniform) {
  set_activity(state, what);
  return ProgressLog(
      std::move(what), std::move(unit), total, static_cast<double>(cfg_.log.progress_s),
      [this, state](const std::string& line) { set_activity(state, line); }, uniform);
}

void MonitorHub::set_activity(RankState state, std::string activity) {
  if (!monitoring_) return;
  phase_ = state_ = state;
  activity_ = std::move(activity);
  since_ = unix_seconds();
  changed_ = true;
  waiting_for_ = 0;
  // A phase change (a step, an evaluation, a save) is reported at once, not throttled like the
  // passes: it is what a stall is read against.
  tick(true);
}

void MonitorHub::finish() {
  if (!monitoring_) return;
  set_activity(RankState::finished, "finished after step " + std::to_string(step_));
  if (rank_ == 0 || !channel_) return tick(true);
  // The final report must not be dropped behind a heartbeat still in flight (a second at most).
  for (int i = 0; i < 100 && channel_->send(encode_report(own_report(unix_seconds()))) == false;
       ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

void MonitorHub::on_wait(const FlightRecord& r) {
  try {
    if (r.id != waiting_for_) {
      waiting_for_ = r.id;
      state_ = RankState::waiting;
      activity_ = std::string("waiting in ") + r.op + " " + (r.group ? r.group->axis : "?") + " #" +
                  std::to_string(r.seq);
      since_ = r.t_start;
      changed_ = true;
    }
    tick(false);
  } catch (...) {  // a heartbeat must never fail a collective
  }
}

RankReport MonitorHub::own_report(double now) const {
  RankReport r;
  r.rank = rank_;
  r.step = step_;
  r.state = state_;
  r.activity = activity_;
  r.since = since_;
  r.sent = now;
  r.step_seconds = last_step_s_;
  r.tokens_per_s = last_tps_;
  r.gemm_flops_per_s = last_flops_;
  const MemorySnapshot m = MemoryTracker::instance().snapshot();
  r.mem_current = m.current;
  r.mem_peak = m.peak;
  if (store_ && store_->tier()) {
    SwapTier* t = store_->tier();
    r.swap_tier = t->name();
    r.swap_used = t->bytes_used();
    r.swap_capacity = t->capacity();
    r.swap_written = store_->bytes_written();
    r.swap_bytes_per_s = swap_bw_;
  }
  for (const Comm* c : comms_)
    if (c) r.comm_bytes[c->axis()] += c->stats().total_bytes();
  return r;
}

void MonitorHub::tick(bool force) {
  const double now = unix_seconds();
  if (!force && now - last_tick_ < kMinTickSeconds) return;
  last_tick_ = now;
  if (board_) {
    if (channel_)
      for (auto& [source, text] : channel_->receive())
        if (auto report = decode_report(text)) {
          report->rank = source;  // the sender is who MPI says it is
          board_->report(*report, now);
        }
    board_->report(own_report(now), now);
    return;
  }
  if (!channel_ || !(force || changed_ || now - last_sent_ >= kHeartbeatSeconds)) return;
  if (channel_->send(encode_report(own_report(now)))) {
    last_sent_ = now;
    changed_ = false;
  }
}

}  // namespace strata
