#pragma once
// FlightRecorder: the last collectives and point-to-point operations of this process, in a ring
// buffer, so that after a hang each rank can say what it did last (<run_dir>/flight_<rank>.jsonl,
// one JSON object per line, oldest first). Recording costs two clock reads and a few stores per
// operation; nothing is written to disk until someone asks (a timeout, a stop while waiting).
// Main thread only, like every communication call (MPI_THREAD_FUNNELED).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace strata {

// Who takes part in a communicator: its axis name and the world rank of each member, so that
// messages and flight records name processes the user can find.
struct CommGroup {
  std::string axis;              // "world", "dp", "sp", "dp*sp", ...
  int rank = 0;                  // this process's rank in the group
  std::vector<int> world_ranks;  // group rank -> world rank
  // Set when an operation on it was abandoned by a timeout: MPI still holds that request, so
  // the communicator must not be freed under it (a nonblocking collective's progress would
  // touch freed memory).
  mutable bool abandoned = false;
  int size() const { return static_cast<int>(world_ranks.size()); }
};

struct FlightRecord {
  uint64_t id = 0;   // position in the recorder (0 = none)
  uint64_t seq = 0;  // operation number on its communicator, from 1
  const char* op = "";
  std::shared_ptr<const CommGroup> group;
  int peer = -1;      // group rank of the other side of a send/recv, -1 for collectives
  int64_t bytes = 0;  // payload bytes this rank sends or contributes
  int64_t step = 0;
  const char* phase = "";
  double t_start = 0;  // Unix time, seconds
  double t_end = 0;    // 0 while not complete
};

class FlightRecorder {
 public:
  explicit FlightRecorder(size_t capacity = 256);

  // Starts a record; returns its id for complete().
  uint64_t begin(FlightRecord r);
  // Marks the record done now (a no-op once it has left the ring).
  void complete(uint64_t id);
  // The record with this id, or nullptr once it has left the ring.
  const FlightRecord* find(uint64_t id) const;

  // Every record still held as JSON lines, oldest first; `rank` is this process's world rank.
  std::string jsonl(int rank) const;
  // Writes jsonl() to `path` (atomically: a reader never sees half a file). Returns false (and
  // does not throw) when it cannot: it runs on the way out of a failing job.
  bool write(const std::string& path, int rank) const;

 private:
  std::vector<FlightRecord> ring_;
  uint64_t next_ = 1;  // id of the next record
};

// Unix time in seconds, microsecond resolution.
double unix_seconds();

}  // namespace strata
