// The pieces of run observation that need no ranks and no sockets: progress text and the ETA,
// heartbeat reports on the wire, the board's stall rule, the Prometheus and JSON renderings,
// trace lanes, TensorBoard records (decoded independently by tests/e2e/observe_check.py) and
// the job-file rules of the new keys.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "core/crc32c.h"
#include "core/trace.h"
#include "input_error_util.h"
#include "launch/job_config.h"
#include "launch/monitor_board.h"
#include "launch/monitor_page.h"
#include "launch/monitor_progress.h"
#include "launch/monitor_render.h"
#include "launch/monitor_report.h"
#include "launch/tensorboard.h"

namespace strata {
namespace {

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(Progress, DurationsReadAtAGlance) {
  EXPECT_EQ(format_duration(0.25), "250ms");
  EXPECT_EQ(format_duration(12.34), "12.3s");
  EXPECT_EQ(format_duration(245), "4m05s");
  EXPECT_EQ(format_duration(7260), "2h01m");
  EXPECT_EQ(format_duration(3 * 86400 + 4 * 3600), "3d04h");
  EXPECT_EQ(format_duration(NAN), "?");
}

TEST(Progress, EtaLeavesTheFirstStepOutOnceAnotherIsTimed) {
  StepClock c;
  EXPECT_TRUE(std::isnan(c.eta(10)));
  c.step_done(5.0);  // warm-up
  EXPECT_DOUBLE_EQ(c.eta(10), 50.0);
  c.step_done(1.0);
  c.step_done(2.0);
  EXPECT_DOUBLE_EQ(c.mean_step(), 1.5);
  EXPECT_DOUBLE_EQ(c.eta(4), 6.0);
  EXPECT_DOUBLE_EQ(c.eta(-1), 0.0);
}

TEST(Progress, PublishesEveryUpdateWithCountsAndEta) {
  std::string seen;
  ProgressLog p("evaluation", "batches", 4, 3600, [&](const std::string& s) { seen = s; });
  p.update(1);
  EXPECT_TRUE(contains(seen, "evaluation: 1/4 batches (25%), ")) << seen;
  EXPECT_TRUE(contains(seen, ", eta ")) << seen;
  p.update(4, "done");
  EXPECT_TRUE(contains(seen, "4/4 batches (100%)")) << seen;
  EXPECT_FALSE(contains(seen, "eta")) << seen;
  EXPECT_TRUE(contains(seen, "| done")) << seen;
  ProgressLog phases(
      "checkpoint", "phases", 3, 0, [&](const std::string& s) { seen = s; }, false);
  phases.update(1);
  EXPECT_FALSE(contains(seen, "eta")) << "phases of unequal length get no ETA: " << seen;
}

RankReport sample_report() {
  RankReport r;
  r.rank = 3;
  r.step = 17;
  r.state = RankState::waiting;
  r.activity = "waiting in all_reduce dp*sp #12\nsecond line";
  r.since = 1700000000.25;
  r.sent = 1700000001.5;
  r.step_seconds = 0.125;
  r.tokens_per_s = 12345.5;
  r.gemm_flops_per_s = 1.5e11;
  r.mem_current[static_cast<int>(MemCategory::params)] = 1 << 20;
  r.mem_peak[static_cast<int>(MemCategory::activations)] = 7 << 20;
  r.swap_tier = "nvme";
  r.swap_used = 4096;
  r.swap_capacity = int64_t{1} << 30;
  r.swap_written = 1 << 22;
  r.swap_bytes_per_s = 2.5e8;
  r.comm_bytes = {{"dp*sp", 1000}, {"world", 8}};
  return r;
}

TEST(MonitorReport, RoundTripsAndRejectsWhatIsNotAReport) {
  const RankReport r = sample_report();
  const auto back = decode_report(encode_report(r));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->rank, 3);
  EXPECT_EQ(back->step, 17);
  EXPECT_EQ(back->state, RankState::waiting);
  EXPECT_EQ(back->activity, "waiting in all_reduce dp*sp #12 second line");
  EXPECT_DOUBLE_EQ(back->since, r.since);
  EXPECT_DOUBLE_EQ(back->gemm_flops_per_s, r.gemm_flops_per_s);
  EXPECT_EQ(back->mem_current, r.mem_current);
  EXPECT_EQ(back->mem_peak, r.mem_peak);
  EXPECT_EQ(back->swap_tier, "nvme");
  EXPECT_EQ(back->swap_capacity, r.swap_capacity);
  EXPECT_EQ(back->comm_bytes, r.comm_bytes);
  EXPECT_FALSE(decode_report(""));
  EXPECT_FALSE(decode_report("rank 1\n"));  // no state
  EXPECT_FALSE(decode_report("rank x\nstate training\n"));
  EXPECT_FALSE(decode_report("rank 1\nstate dancing\n"));
  EXPECT_FALSE(decode_report("rank 1\nstate training\nstep 1e3\n"));
  EXPECT_TRUE(decode_report("rank 1\nstate training\nnew_field 5\n"));
}

RunInfo two_ranks() {
  RunInfo info;
  info.job = "job</script>.yaml";
  info.world = 2;
  info.dp = 2;
  info.total_steps = 100;
  info.started = 1000;
  return info;
}

StepPoint point(int64_t step, double loss, double val_loss) {
  StepPoint p;
  p.step = step;
  p.loss = loss;
  p.val_loss = val_loss;
  p.tokens_per_s = 100;
  return p;
}

TEST(MonitorBoard, ASilentRankIsStalledUnlessFinished) {
  RunBoard board(two_ranks());
  RankReport a;
  a.rank = 0;
  a.state = RankState::waiting;
  board.report(a, 1010);
  RankReport b;
  b.rank = 1;
  b.state = RankState::training;
  board.report(b, 1002);
  RankReport stray;
  stray.rank = 7;
  board.report(stray, 1010);  // no such rank: ignored
  board.add_step(point(1, 5, NAN), 99, 0.5);
  const BoardSnapshot s = board.snapshot(1010);
  EXPECT_DOUBLE_EQ(s.stall_after, kMinStallSeconds);
  EXPECT_EQ(shown_state(s.ranks[0], s.now, s.stall_after), "waiting");
  EXPECT_EQ(shown_state(s.ranks[1], s.now, s.stall_after), "stalled");
  b.state = RankState::finished;
  board.report(b, 1002);
  const BoardSnapshot f = board.snapshot(1010);
  EXPECT_EQ(shown_state(f.ranks[1], f.now, f.stall_after), "finished");
  EXPECT_DOUBLE_EQ(stall_threshold(10), 30);
}

TEST(MonitorBoard, LongRunsKeepTheirWholeCurveThinned) {
  RunBoard board(two_ranks());
  for (int64_t s = 1; s <= 5000; ++s) board.add_step(point(s, 1, NAN), 0, 0);
  const BoardSnapshot snap = board.snapshot(0);
  EXPECT_LE(snap.history.size(), RunBoard::kMaxHistory);
  EXPECT_EQ(snap.history.front().step, 1);
  EXPECT_EQ(snap.history.back().step, 5000);
}

TEST(MonitorRender, EveryFamilyHasHelpAndTypeAndCountersEndInTotal) {
  RunBoard board(two_ranks());
  RankReport r = sample_report();
  r.rank = 1;
  board.report(r, 1001);
  board.add_step(point(1, 5.5, 5.6), 10, 1);
  const std::string text = prometheus_text(board.snapshot(1002));
  EXPECT_TRUE(contains(text, "# TYPE strata_loss gauge\nstrata_loss 5.5\n")) << text;
  EXPECT_TRUE(contains(text, "strata_val_loss 5.6\n"));
  EXPECT_TRUE(contains(text, "strata_heartbeat_age_seconds{rank=\"1\"} 1\n")) << text;
  EXPECT_TRUE(contains(text, "strata_heartbeat_age_seconds{rank=\"0\"} NaN\n")) << text;
  EXPECT_TRUE(contains(text, "strata_comm_bytes_total{rank=\"1\",axis=\"dp*sp\"} 1000\n"));
  EXPECT_TRUE(contains(text, "strata_memory_peak_bytes{rank=\"1\",category=\"activations\"} "));
  EXPECT_TRUE(contains(text, "strata_swap_tier_bytes{rank=\"1\",tier=\"nvme\"} 4096\n"));
  size_t families = 0;
  for (size_t at = text.find("# TYPE "); at != std::string::npos;
       at = text.find("# TYPE ", at + 1)) {
    ++families;
    const std::string line = text.substr(at, text.find('\n', at) - at);
    const bool counter = line.ends_with(" counter");
    const std::string name = line.substr(7, line.find(' ', 7) - 7);
    EXPECT_EQ(counter, name.ends_with("_total")) << line;
    EXPECT_TRUE(contains(text, "# HELP " + name + " ")) << name;
  }
  EXPECT_GE(families, 15u);
}

TEST(MonitorRender, StatusJsonAndThePageThatEmbedsIt) {
  RunBoard board(two_ranks());
  board.add_step(point(1, 5.5, NAN), NAN, 1);
  const std::string js = status_json(board.snapshot(1002));
  EXPECT_TRUE(contains(js, "\"val_loss\":[null]")) << js;
  EXPECT_TRUE(contains(js, "\"eta_s\":null")) << js;
  EXPECT_TRUE(contains(js, "\"state\":\"unknown\"")) << js;  // no heartbeat yet
  const std::string page = dashboard_html(js);
  EXPECT_FALSE(contains(page, "job</script>")) << "the job name must not close the script";
  EXPECT_TRUE(contains(page, "job<\\/script>.yaml"));
  EXPECT_FALSE(contains(page, "http://")) << "no outside assets";
  EXPECT_FALSE(contains(page, "https://"));
}

TEST(Trace, OverlappingSpansGetLanesAndStepsBeginAndEnd) {
  std::vector<TraceSpan> spans = {
      {TraceTrack::comm, "a", 0, 10, ""},
      {TraceTrack::comm, "b", 5, 15, "\"bytes\":4"},  // crosses a: a second lane
      {TraceTrack::comm, "c", 1, 2, ""},              // nests in a: a's lane
      {TraceTrack::step, "step 1", 0, 20, ""},
  };
  const std::string js = trace_event_json(spans, 3, "rank 3");
  EXPECT_TRUE(contains(js,
                       "{\"ph\":\"X\",\"name\":\"a\",\"cat\":\"communication\",\"pid\":3,"
                       "\"tid\":3000,"))
      << js;
  EXPECT_TRUE(contains(js, "\"name\":\"b\",\"cat\":\"communication\",\"pid\":3,\"tid\":3001,"));
  EXPECT_TRUE(contains(js, "\"name\":\"c\",\"cat\":\"communication\",\"pid\":3,\"tid\":3000,"));
  EXPECT_TRUE(contains(js, "\"ph\":\"B\",\"name\":\"step 1\""));
  EXPECT_TRUE(contains(js, "\"ph\":\"E\",\"name\":\"step 1\""));
  EXPECT_TRUE(contains(js, "\"args\":{\"name\":\"communication 2\"}"));
  EXPECT_TRUE(contains(js, "\"args\":{\"bytes\":4}"));
}

TEST(Trace, RecordsOnlyWhileActive) {
  TraceRecorder& r = TraceRecorder::instance();
  r.take();
  trace_span(TraceTrack::compute, "off", 0);
  r.set_active(true);
  trace_span(TraceTrack::compute, "on", trace_now_us());
  r.set_active(false);
  const auto spans = r.take();
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0].name, "on");
  EXPECT_GE(spans[0].t1_us, spans[0].t0_us);
}

TEST(TensorBoard, RecordFramingCarriesMaskedCrcs) {
  const std::string rec = tfrecord("abc");
  ASSERT_EQ(rec.size(), 8u + 4 + 3 + 4);
  uint64_t len = 0;
  std::memcpy(&len, rec.data(), 8);
  EXPECT_EQ(len, 3u);
  uint32_t data_crc = 0;
  std::memcpy(&data_crc, rec.data() + 15, 4);
  const uint32_t crc = crc32c("abc", 3);
  EXPECT_EQ(data_crc, ((crc >> 15) | (crc << 17)) + 0xa282ead8u);
  // Event{wall_time=1 (fixed64), step=2 (varint 300), summary=5{value{tag "t", simple_value}}}
  const std::string ev = scalar_event(1.0, 300, {{"t", 2.0}});
  EXPECT_EQ(static_cast<unsigned char>(ev[0]), 0x09u);         // field 1, fixed64
  EXPECT_EQ(ev.substr(9, 3), std::string("\x10\xac\x02", 3));  // field 2, varint 300
  EXPECT_EQ(static_cast<unsigned char>(ev[12]), 0x2au);        // field 5, length-delimited
}

JobConfig parse(const std::vector<std::string>& sets) {
  return parse_job_config("data:\n  train: x.bin\n", "job.yaml", sets);
}

TEST(MonitorKeys, DefaultsAndValidValues) {
  const JobConfig c = parse({"monitor.port=8080", "monitor.bind=::1", "log.trace_steps=[1, 5]",
                             "log.tensorboard_dir=tb", "log.progress_s=0"});
  EXPECT_EQ(c.monitor.port, 8080);
  EXPECT_EQ(c.monitor.bind, "::1");
  EXPECT_EQ(c.log.trace_steps, (std::vector<int64_t>{1, 5}));
  EXPECT_EQ(c.log.tensorboard_dir, "tb");
  const JobConfig d = parse({});
  EXPECT_EQ(d.monitor.port, 0);
  EXPECT_EQ(d.monitor.bind, "127.0.0.1");
  EXPECT_EQ(d.log.progress_s, 10);
  // The resolved dump carries the keys and reads back.
  const JobConfig back = parse_job_config(dump_job_config(c), "dump.yaml");
  EXPECT_EQ(back.monitor.bind, "::1");
  EXPECT_EQ(back.log.trace_steps, c.log.trace_steps);
}

TEST(MonitorKeys, BadValuesNameTheKey) {
  using test::expect_input_error;
  expect_input_error([] { parse({"monitor.port=70000"}); },
                     "--set monitor.port=70000: expected a TCP port");
  expect_input_error([] { parse({"monitor.port=-1"}); }, "monitor.port");
  expect_input_error([] { parse({"monitor.port=http"}); }, "monitor.port");
  expect_input_error([] { parse({"monitor.bind=localhost"}); },
                     "monitor.bind=localhost: expected an IP");
  expect_input_error([] { parse({"log.trace_steps=[0]"}); },
                     "log.trace_steps=[0]: step 0 is outside");
  expect_input_error(
      [] {
        parse({"train.steps=5", "log.trace_steps=[6]"});
      },
      "[1, train.steps = 5]");
  expect_input_error([] { parse({"log.trace_steps=[2, 2]"}); }, "step 2 is listed twice");
  expect_input_error([] { parse({"log.trace_steps=3"}); }, "log.trace_steps");
  expect_input_error([] { parse({"log.progress_s=-1"}); }, "log.progress_s");
  expect_input_error(
      [] { parse_job_config("data:\n  train: x\nmonitor:\n  port: 99999\n", "j.yaml"); },
      "j.yaml:4:3: monitor.port: expected a TCP port in [0, 65535] (0 = off), got 99999");
  expect_input_error([] { parse_job_config("data:\n  train: x\nmonitor:\n  prot: 1\n", "j.yaml"); },
                     "j.yaml:4:3: unknown key 'monitor.prot' (did you mean 'port'?)");
}

}  // namespace
}  // namespace strata
