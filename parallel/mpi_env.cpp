#include "parallel/mpi_env.h"

#include <mpi.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "core/error.h"
#include "parallel/mpi_comm.h"
#include "parallel/mpi_watchdog.h"
#include "parallel/watchdog.h"

namespace strata {

namespace {

void check(int rc, const char* op) {
  if (rc != MPI_SUCCESS) throw StrataError(mpi_error_message(rc, op, "MPI_COMM_WORLD"));
}

}  // namespace

bool launched_under_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_NTASKS"})
    if (const char* s = std::getenv(v); s && *s) return true;
  return false;
}

int affinity_cpu_count() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return std::max(1, CPU_COUNT(&set));
}

MpiEnv::MpiEnv(int* argc, char*** argv) {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) throw StrataError("MPI was already finalised; it cannot be initialised again");
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = MPI_THREAD_SINGLE;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      throw StrataError("MPI_Init_thread failed");
    owns_ = true;
    if (provided < MPI_THREAD_FUNNELED) {
      MPI_Finalize();
      throw StrataError("MPI provides no MPI_THREAD_FUNNELED support (got level " +
                        std::to_string(provided) + ")");
    }
  }
  // Report errors instead of aborting in MPI's default handler.
  check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(MPI_COMM_WORLD, &world_size_), "MPI_Comm_size");
  // The collective watchdog's own communicator, made here while every rank is known to be
  // present: a timed-out rank asks the others where they are stuck on it (parallel/mpi_watchdog.h).
  MPI_Comm watchdog = MPI_COMM_NULL;
  check(MPI_Comm_dup(MPI_COMM_WORLD, &watchdog), "MPI_Comm_dup");
  set_watchdog_comm(watchdog);
  Watchdog::instance().set_world_rank(world_rank_);

  MPI_Comm node = MPI_COMM_NULL;
  check(
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank_, MPI_INFO_NULL, &node),
      "MPI_Comm_split_type");
  check(MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check(MPI_Comm_rank(node, &local_rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(node, &local_size_), "MPI_Comm_size");
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) CPU_ZERO(&set);
  check(MPI_Allreduce(MPI_IN_PLACE, &set, static_cast<int>(sizeof set), MPI_UNSIGNED_CHAR, MPI_BOR,
                      node),
        "MPI_Allreduce");
  node_cpus_ = std::max(1, CPU_COUNT(&set));
  MPI_Comm_free(&node);
}

MpiEnv::~MpiEnv() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_ && !finalized) MPI_Finalize();
}

int MpiEnv::default_threads_per_rank() const { return std::max(1, node_cpus_ / local_size_); }

std::unique_ptr<Comm> MpiEnv::world(std::string axis) const {
  return MpiComm::world(std::move(axis));
}

void MpiEnv::abort(int exit_code) {
  // MPI_Abort asks the launcher to end every rank; should that itself hang (a launcher that
  // cannot reach a stopped peer), SIGALRM's default action ends this process 10 s later.
  alarm(10);
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);  // MPI_Abort does not return; this keeps [[noreturn]] honest
}

}  // namespace strata
