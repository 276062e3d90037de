#pragma once
// Trace events: spans of the steps chosen by log.trace_steps, written as Chrome/Perfetto
// trace-event JSON (open it in ui.perfetto.dev or chrome://tracing), one file per rank with
// pid = rank, so compute, communication, swap I/O and the optimizer step can be seen side by
// side and their overlap (or its absence) read off the timeline.
//
// Process-wide, like the memory tracker: the places that know a span (the trainer's unit hooks,
// the flight recorder, the I/O engine's driver thread) record into one recorder. Off, recording
// costs one relaxed atomic load. Spans are kept in memory until take(); a traced step of a big
// model holds a few thousand of them.
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace strata {

// Where a span is drawn: one track (a tid) per stream, split into lanes where spans on it
// overlap without nesting (nonblocking collectives in flight together, parallel I/O requests).
enum class TraceTrack : int { step, compute, optimizer, comm, swap, count };
const char* trace_track_name(TraceTrack t);

struct TraceSpan {
  TraceTrack track = TraceTrack::compute;
  std::string name;
  double t0_us = 0;  // Unix time in microseconds, so the ranks' files line up when merged
  double t1_us = 0;
  std::string args;  // a JSON object's members ("\"bytes\":4096"), or ""
};

// Unix time in microseconds (system clock: one time base for every rank of a node).
double trace_now_us();

class TraceRecorder {
 public:
  static TraceRecorder& instance();

  bool active() const { return active_.load(std::memory_order_relaxed); }
  void set_active(bool on) { active_.store(on, std::memory_order_relaxed); }
  // Thread-safe; dropped when not active.
  void add(TraceSpan span);
  // Everything recorded so far (and forgets it).
  std::vector<TraceSpan> take();

 private:
  TraceRecorder() = default;
  std::atomic<bool> active_{false};
  std::mutex mu_;
  std::vector<TraceSpan> spans_;
};

// Records [t0_us, now] on `track` when the recorder is active.
void trace_span(TraceTrack track, std::string name, double t0_us, std::string args = {});

// The trace-event JSON document of `spans` for process `pid`: the step track as "B"/"E" pairs,
// every other span a complete ("X") event, each on the first lane of its track where it nests,
// and metadata naming the process and every lane.
std::string trace_event_json(std::vector<TraceSpan> spans, int pid, const std::string& process);

// A JSON string literal of `s` (quotes and control characters escaped).
std::string json_quote(const std::string& s);

}  // namespace strata
