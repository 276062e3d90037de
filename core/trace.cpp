#include "core/trace.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <utility>

namespace strata {

const char* trace_track_name(TraceTrack t) {
  switch (t) {
    case TraceTrack::step:
      return "step";
    case TraceTrack::compute:
      return "compute";
    case TraceTrack::optimizer:
      return "optimizer";
    case TraceTrack::comm:
      return "communication";
    case TraceTrack::swap:
      return "swap I/O";
    case TraceTrack::count:
      break;
  }
  return "?";
}

double trace_now_us() {
  using namespace std::chrono;
  return duration<double, std::micro>(system_clock::now().time_since_epoch()).count();
}

TraceRecorder& TraceRecorder::instance() {
  static TraceRecorder r;
  return r;
}

void TraceRecorder::add(TraceSpan span) {
  if (!active()) return;
  const std::lock_guard<std::mutex> lk(mu_);
  spans_.push_back(std::move(span));
}

std::vector<TraceSpan> TraceRecorder::take() {
  const std::lock_guard<std::mutex> lk(mu_);
  return std::exchange(spans_, {});
}

void trace_span(TraceTrack track, std::string name, double t0_us, std::string args) {
  TraceRecorder& r = TraceRecorder::instance();
  if (!r.active()) return;
  r.add(TraceSpan{track, std::move(name), t0_us, trace_now_us(), std::move(args)});
}

std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

namespace {

constexpr int kLanesPerTrack = 1000;  // tid = track * this + lane

// Lanes of one track: a span goes on the first lane whose open spans it nests in (after those
// ended before it began are closed), so no lane ever holds two partly overlapping spans.
class LaneAssigner {
 public:
  int place(const TraceSpan& s) {
    for (size_t i = 0;; ++i) {
      if (i == lanes_.size()) lanes_.emplace_back();
      std::vector<double>& open = lanes_[i];  // end times, innermost last
      while (!open.empty() && open.back() <= s.t0_us) open.pop_back();
      if (open.empty() || s.t1_us <= open.back()) {
        open.push_back(s.t1_us);
        return static_cast<int>(i);
      }
    }
  }
  int lanes() const { return static_cast<int>(lanes_.size()); }

 private:
  std::vector<std::vector<double>> lanes_;
};

std::string num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}

std::string event(const char* ph, const TraceSpan& s, int pid, int tid, double ts) {
  std::string e = std::string("{\"ph\":\"") + ph + "\",\"name\":" + json_quote(s.name) +
                  ",\"cat\":" + json_quote(trace_track_name(s.track)) +
                  ",\"pid\":" + std::to_string(pid) + ",\"tid\":" + std::to_string(tid) +
                  ",\"ts\":" + num(ts);
  if (ph[0] == 'X') e += ",\"dur\":" + num(std::max(0.0, s.t1_us - s.t0_us));
  if (!s.args.empty() && ph[0] != 'E') e += ",\"args\":{" + s.args + "}";
  return e + "}";
}

std::string metadata(const char* what, int pid, int tid, const std::string& name) {
  return std::string("{\"ph\":\"M\",\"name\":\"") + what + "\",\"pid\":" + std::to_string(pid) +
         ",\"tid\":" + std::to_string(tid) + ",\"args\":{\"name\":" + json_quote(name) + "}}";
}

}  // namespace

std::string trace_event_json(std::vector<TraceSpan> spans, int pid, const std::string& process) {
  // Outer spans first where two begin together, so a lane sees the enclosing one first.
  std::stable_sort(spans.begin(), spans.end(), [](const TraceSpan& a, const TraceSpan& b) {
    return a.t0_us != b.t0_us ? a.t0_us < b.t0_us : a.t1_us > b.t1_us;
  });
  std::vector<LaneAssigner> lanes(static_cast<size_t>(TraceTrack::count));
  std::vector<std::string> events;
  events.push_back(metadata("process_name", pid, 0, process));
  for (const TraceSpan& s : spans) {
    const int track = static_cast<int>(s.track);
    const int tid = track * kLanesPerTrack + lanes[static_cast<size_t>(track)].place(s);
    if (s.track == TraceTrack::step) {  // steps never overlap: one begin/end pair each
      events.push_back(event("B", s, pid, tid, s.t0_us));
      events.push_back(event("E", s, pid, tid, s.t1_us));
    } else {
      events.push_back(event("X", s, pid, tid, s.t0_us));
    }
  }
  for (int t = 0; t < static_cast<int>(TraceTrack::count); ++t)
    for (int lane = 0; lane < lanes[static_cast<size_t>(t)].lanes(); ++lane) {
      std::string name = trace_track_name(static_cast<TraceTrack>(t));
      if (lane > 0) {  // appended in two steps: GCC 12 falsely warns (-Wrestrict) on " " + ...
        name += ' ';
        name += std::to_string(lane + 1);
      }
      events.push_back(metadata("thread_name", pid, t * kLanesPerTrack + lane, name));
    }
  std::ostringstream os;
  os << "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
  for (size_t i = 0; i < events.size(); ++i)
    os << events[i] << (i + 1 < events.size() ? ",\n" : "\n");
  os << "]}\n";
  return os.str();
}

}  // namespace strata
