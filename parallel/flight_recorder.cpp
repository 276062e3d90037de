#include "parallel/flight_recorder.h"

#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <sstream>

#include "core/atomic_file.h"
#include "core/trace.h"

namespace strata {

double unix_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

FlightRecorder::FlightRecorder(size_t capacity) : ring_(capacity > 0 ? capacity : 1) {}

uint64_t FlightRecorder::begin(FlightRecord r) {
  r.id = next_++;
  r.t_start = unix_seconds();
  r.t_end = 0;
  ring_[r.id % ring_.size()] = std::move(r);
  return next_ - 1;
}

const FlightRecord* FlightRecorder::find(uint64_t id) const {
  if (id == 0) return nullptr;
  const FlightRecord& r = ring_[id % ring_.size()];
  return r.id == id ? &r : nullptr;
}

namespace {

// The operation as a trace span (log.trace_steps): "all_reduce dp #12" from start to completion.
void trace_record(const FlightRecord& r) {
  if (!TraceRecorder::instance().active()) return;
  const std::string axis = r.group ? r.group->axis : "?";
  std::string args = "\"axis\":" + json_quote(axis) + ",\"seq\":" + std::to_string(r.seq) +
                     ",\"bytes\":" + std::to_string(r.bytes);
  if (r.peer >= 0) args += ",\"peer\":" + std::to_string(r.peer);
  TraceRecorder::instance().add(
      TraceSpan{TraceTrack::comm, std::string(r.op) + " " + axis + " #" + std::to_string(r.seq),
                r.t_start * 1e6, r.t_end * 1e6, std::move(args)});
}

}  // namespace

void FlightRecorder::complete(uint64_t id) {
  if (id == 0) return;
  FlightRecord& r = ring_[id % ring_.size()];
  if (r.id != id) return;
  r.t_end = unix_seconds();
  trace_record(r);
}

namespace {

std::string json_time(double t) {
  if (t <= 0) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6f", t);
  return buf;
}

}  // namespace

std::string FlightRecorder::jsonl(int rank) const {
  std::ostringstream os;
  const uint64_t first = next_ > ring_.size() ? next_ - ring_.size() : 1;
  for (uint64_t id = first; id < next_; ++id) {
    const FlightRecord& r = ring_[id % ring_.size()];
    if (r.id != id) continue;
    os << "{\"rank\":" << rank << ",\"id\":" << r.id << ",\"op\":" << json_quote(r.op)
       << ",\"group\":" << json_quote(r.group ? r.group->axis : "?")
       << ",\"group_rank\":" << (r.group ? r.group->rank : -1)
       << ",\"group_size\":" << (r.group ? r.group->size() : 0) << ",\"seq\":" << r.seq
       << ",\"peer\":" << r.peer << ",\"bytes\":" << r.bytes << ",\"step\":" << r.step
       << ",\"phase\":" << json_quote(r.phase) << ",\"t_start\":" << json_time(r.t_start)
       << ",\"t_end\":" << json_time(r.t_end) << ",\"done\":" << (r.t_end > 0 ? "true" : "false")
       << "}\n";
  }
  return os.str();
}

bool FlightRecorder::write(const std::string& path, int rank) const {
  try {
    const auto dir = std::filesystem::path(path).parent_path();
    if (!dir.empty()) std::filesystem::create_directories(dir);
    write_file_atomic(path, jsonl(rank));
    return true;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "strata: rank %d: could not write %s: %s\n", rank, path.c_str(), e.what());
    return false;
  }
}

}  // namespace strata
