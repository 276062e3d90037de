#pragma once
// MpiEnv: MPI's lifetime for one process (MPI_Init_thread with MPI_THREAD_FUNNELED: OpenMP threads
// compute, only the main thread communicates) plus the node facts that size thread pools.
// A process that was not launched by mpirun/srun does not need it: see parallel/world.h.
#include <memory>
#include <string>

#include "parallel/comm.h"

namespace strata {

// True when a launcher started this process as an MPI rank (OMPI_COMM_WORLD_SIZE, PMI_SIZE,
// PMIX_RANK or SLURM_NTASKS in the environment).
bool launched_under_mpi();

// Logical CPUs this process may run on (its affinity mask; at least 1).
int affinity_cpu_count();

class MpiEnv {
 public:
  // Initialises MPI unless it already is (then it leaves finalising to whoever initialised it).
  // Collective over MPI_COMM_WORLD: it also finds the node's ranks and CPUs.
  MpiEnv(int* argc, char*** argv);
  ~MpiEnv();  // MPI_Finalize, if this object initialised MPI
  MpiEnv(const MpiEnv&) = delete;
  MpiEnv& operator=(const MpiEnv&) = delete;

  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }
  // Rank among the processes on this node, and their number (MPI_COMM_TYPE_SHARED).
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  // CPUs of the node the job may use (the union of its ranks' affinity masks there).
  int node_cpus() const { return node_cpus_; }
  // node_cpus / ranks on the node, at least 1: OpenMP threads per rank when nothing else is set.
  // OpenMPI binds each rank to a core when it runs <= 2 ranks, to a socket above that, so the
  // union of the masks is the set of CPUs the job was given; --bind-to none widens it.
  int default_threads_per_rank() const;

  // A new communicator over all ranks (a duplicate of MPI_COMM_WORLD).
  std::unique_ptr<Comm> world(std::string axis = "world") const;

  // Ends every rank of the job: for an error that only this rank saw, where returning would
  // leave the others waiting in a collective forever.
  [[noreturn]] static void abort(int exit_code);

 private:
  bool owns_ = false;
  int world_rank_ = 0;
  int world_size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  int node_cpus_ = 1;
};

}  // namespace strata
