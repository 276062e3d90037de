#include "parallel/mpi_watchdog.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/stop.h"
#include "parallel/watchdog.h"

namespace strata {

namespace {

MPI_Comm g_exchange = MPI_COMM_NULL;

constexpr int kReportTag = 0x5717;
constexpr double kSpinSeconds = 200e-6;  // pure polling: a collective usually ends in here
constexpr double kYieldSeconds = 2e-3;   // then polling with sched_yield
constexpr double kMaxSleep = 1e-3;       // then sleeps of 5% of the wait so far, at most this

// What a timed-out rank tells the others. Plain bytes: every rank runs the same binary.
struct StuckReport {
  int32_t world_rank = -1;
  int32_t group_rank = -1;
  int64_t step = 0;
  uint64_t seq = 0;
  char axis[24] = {};
  char op[24] = {};
};

StuckReport report_of(const FlightRecord& r, int world_rank) {
  StuckReport s;
  s.world_rank = world_rank;
  s.group_rank = r.group ? r.group->rank : -1;
  s.step = r.step;
  s.seq = r.seq;
  std::strncpy(s.axis, r.group ? r.group->axis.c_str() : "?", sizeof s.axis - 1);
  std::strncpy(s.op, r.op, sizeof s.op - 1);
  return s;
}

std::string fmt_seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", s);
  return buf;
}

// "dp all_reduce #37"
std::string op_name(const std::string& axis, const std::string& op, uint64_t seq) {
  return axis + " " + op + " #" + std::to_string(seq);
}

// "dp rank 0 of 2: world ranks 0,1"
std::string group_members(const FlightRecord& r) {
  if (!r.group) return "unknown group";
  std::string s = r.group->axis + " rank " + std::to_string(r.group->rank) + " of " +
                  std::to_string(r.group->size()) + ": world ranks ";
  for (int i = 0; i < r.group->size(); ++i) {
    if (i) s += ',';  // not `(i ? "," : "") + ...`: GCC 12 warns a false -Wrestrict on it at -O3
    s += std::to_string(r.group->world_ranks[static_cast<size_t>(i)]);
  }
  return s;
}

// The group ranks this operation waits on: the peer of a send/recv, else every other member.
std::vector<int> awaited(const FlightRecord& r) {
  std::vector<int> g;
  if (!r.group) return g;
  if (r.peer >= 0) return {r.peer};
  for (int i = 0; i < r.group->size(); ++i)
    if (i != r.group->rank) g.push_back(i);
  return g;
}

// The buffers and requests of every exchange, never freed: a rank that answers after we gave up
// still writes into them (the process is about to exit). Held from a static pointer so that they
// stay reachable, which is what they are (LeakSanitizer reported them as leaks).
struct ExchangeBuffers {
  std::vector<StuckReport> in, out;
  std::vector<MPI_Request> reqs;
};
std::vector<std::unique_ptr<ExchangeBuffers>>& kept_exchange_buffers() {
  static auto* kept = new std::vector<std::unique_ptr<ExchangeBuffers>>;
  return *kept;
}

// Sends this rank's report to every rank and collects theirs for `grace` seconds (less when all
// have answered).
std::vector<std::optional<StuckReport>> exchange(const StuckReport& mine, double grace) {
  int size = 1, me = 0;
  if (g_exchange == MPI_COMM_NULL || MPI_Comm_size(g_exchange, &size) != MPI_SUCCESS ||
      MPI_Comm_rank(g_exchange, &me) != MPI_SUCCESS)
    return {};
  auto& buffers = kept_exchange_buffers().emplace_back(std::make_unique<ExchangeBuffers>());
  buffers->in.resize(static_cast<size_t>(size));
  buffers->out.assign(1, mine);
  buffers->reqs.resize(2 * static_cast<size_t>(size));
  StuckReport* in = buffers->in.data();
  StuckReport* out = buffers->out.data();
  MPI_Request* reqs = buffers->reqs.data();
  std::vector<std::optional<StuckReport>> got(static_cast<size_t>(size));
  int pending = 0;
  for (int p = 0; p < size; ++p) {
    reqs[p] = reqs[size + p] = MPI_REQUEST_NULL;
    if (p == me) continue;
    const int n = static_cast<int>(sizeof(StuckReport));
    if (MPI_Irecv(&in[p], n, MPI_BYTE, p, kReportTag, g_exchange, &reqs[p]) == MPI_SUCCESS)
      ++pending;
    MPI_Isend(out, n, MPI_BYTE, p, kReportTag, g_exchange, &reqs[size + p]);
  }
  const auto t0 = Clock::now();
  while (pending > 0 && seconds_since(t0) < grace) {
    for (int p = 0; p < size; ++p) {
      if (reqs[p] == MPI_REQUEST_NULL) continue;
      int flag = 0;
      if (MPI_Test(&reqs[p], &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
        reqs[p] = MPI_REQUEST_NULL;  // a peer that is gone: it stays unanswered
        --pending;
      } else if (flag) {
        got[static_cast<size_t>(p)] = in[p];
        --pending;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return got;
}

// The "did not arrive" part of the message, from the answers of the exchange.
std::string diagnosis(const FlightRecord& r, const std::vector<std::optional<StuckReport>>& got,
                      double grace) {
  std::string silent, elsewhere;
  for (int g : awaited(r)) {
    const int w = r.group ? r.group->world_ranks[static_cast<size_t>(g)] : g;
    const std::string axis = r.group ? r.group->axis : std::string("?");
    const std::string who =
        "world rank " + std::to_string(w) +
        (axis == "world" ? "" : " (" + axis + " rank " + std::to_string(g) + ")");
    const auto& a = w < static_cast<int>(got.size()) ? got[static_cast<size_t>(w)] : std::nullopt;
    if (!a) {
      silent += (silent.empty() ? "" : ", ") + who;
    } else if (std::string(a->axis) != (r.group ? r.group->axis : "") || a->seq != r.seq ||
               std::string(a->op) != r.op) {
      elsewhere += (elsewhere.empty() ? "" : "; ") + who + " waits in " +
                   op_name(a->axis, a->op, a->seq) + " at step " + std::to_string(a->step);
    }
  }
  std::string s;
  if (!silent.empty())
    s += " Did not arrive: " + silent + ": no answer to the watchdog within " + fmt_seconds(grace) +
         " s (dead, stopped, or stuck in computation).";
  if (!elsewhere.empty()) s += " Waiting elsewhere (a mismatch of collectives): " + elsewhere + ".";
  if (got.empty()) s += " The other ranks could not be asked (no watchdog communicator).";
  if (s.empty()) s = " Every rank of the group reported the same operation as stuck.";
  return s;
}

[[noreturn]] void on_timeout(const FlightRecord& r, double limit) {
  Watchdog& wd = Watchdog::instance();
  wd.set_fired();
  if (r.group) r.group->abandoned = true;
  const int me = wd.world_rank();
  const std::string where = "step " + std::to_string(r.step) + " (" + r.phase +
                            "): " + op_name(r.group ? r.group->axis : "?", r.op, r.seq) +
                            " did not complete within " + fmt_seconds(limit) + " s on world rank " +
                            std::to_string(me) + " (" + group_members(r) + ", " +
                            std::to_string(r.bytes) + " bytes)";
  // First what this rank knows, and its flight recorder: another rank's MPI_Abort may end this
  // process during the exchange.
  const bool wrote = wd.write_flight();
  const std::string flight =
      wrote ? " Last operations of this rank: " + wd.flight_path() + "." : "";
  const double grace = wd.grace();
  std::fprintf(stderr, "strata: rank %d: watchdog: %s; asking the other ranks for %s s.%s\n", me,
               where.c_str(), fmt_seconds(grace).c_str(), flight.c_str());
  std::fflush(stderr);
  const auto got = exchange(report_of(r, me), grace);
  throw CollectiveTimeout("collective timeout at " + where + "." + diagnosis(r, got, grace) +
                          flight);
}

// MPI_Testall, but with the failing request's own error code rather than MPI_ERR_IN_STATUS
// (a truncated receive must say MPI_ERR_TRUNCATE, as the blocking call did).
int test_all(int n, MPI_Request* reqs, int* flag, MPI_Status* statuses) {
  if (n == 1) return MPI_Test(reqs, flag, statuses);
  const int rc = MPI_Testall(n, reqs, flag, statuses);
  if (rc == MPI_ERR_IN_STATUS && statuses != MPI_STATUSES_IGNORE)
    for (int i = 0; i < n; ++i)
      if (statuses[i].MPI_ERROR != MPI_SUCCESS && statuses[i].MPI_ERROR != MPI_ERR_PENDING)
        return statuses[i].MPI_ERROR;
  return rc;
}

// Sleeps between polls once the operation has waited past the spin and yield phases.
void back_off(double waited) {
  if (waited < kYieldSeconds) {
    sched_yield();
    return;
  }
  const double s = std::min(kMaxSleep, 0.05 * waited);
  std::this_thread::sleep_for(std::chrono::duration<double>(s));
}

}  // namespace

void set_watchdog_comm(MPI_Comm comm) {
  g_exchange = comm;
  if (comm != MPI_COMM_NULL) MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
}

void renew_watchdog_comm() {
  MPI_Comm dup = MPI_COMM_NULL;
  if (MPI_Comm_dup(MPI_COMM_WORLD, &dup) == MPI_SUCCESS) set_watchdog_comm(dup);
}

int mpi_wait_all(int n, MPI_Request* reqs, MPI_Status* statuses, const FlightRecord& what) {
  Watchdog& wd = Watchdog::instance();
  if (wd.fired()) {
    if (what.group) what.group->abandoned = true;
    throw CollectiveTimeout(op_name(what.group ? what.group->axis : "?", what.op, what.seq) +
                            " abandoned: an earlier operation timed out");
  }
  const auto t0 = Clock::now();
  double limit = wd.deadline();
  bool stop_seen = false;
  for (;;) {
    int flag = 0;
    const int rc = test_all(n, reqs, &flag, statuses);
    if (rc != MPI_SUCCESS || flag) {
      wd.recorder().complete(what.id);
      return rc;
    }
    const double waited = seconds_since(t0);
    if (waited < kSpinSeconds) continue;
    wd.while_waiting(what);
    if (!stop_seen && stop_signal() != 0) {
      // A stop while waiting (SIGTERM from a launcher whose other rank died, or a time limit):
      // keep the record now, in case the next signal is SIGKILL, and wait no longer than the
      // plain deadline.
      stop_seen = true;
      wd.write_flight();
      limit = std::min(limit, wd.timeout());
    }
    if (waited >= limit) on_timeout(what, limit);
    back_off(waited);
  }
}

}  // namespace strata
