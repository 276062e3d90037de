#pragma once
// World: the job as this process sees it. Under mpirun/srun it initialises MPI and the world is
// an MpiComm; a process started directly is the layout dp=sp=pp=1 on a SelfComm and never touches
// MPI (singleton MPI_Init works here but costs ~0.3 s and forks an ORTE daemon per run).
#include <memory>

#include "parallel/comm.h"
#include "parallel/mpi_env.h"

namespace strata {

class World {
 public:
  enum class Mode { automatic, mpi, self };
  // automatic: MPI when launched_under_mpi(), else self. mpi forces MPI_Init (singleton when not
  // launched by mpirun); self never initialises MPI.
  World(int* argc, char*** argv, Mode mode = Mode::automatic);
  ~World();

  Comm& comm() { return *comm_; }
  bool uses_mpi() const { return mpi_ != nullptr; }
  int rank() const { return comm_->rank(); }
  int size() const { return comm_->size(); }
  int local_rank() const { return mpi_ ? mpi_->local_rank() : 0; }
  int local_size() const { return mpi_ ? mpi_->local_size() : 1; }
  // Logical CPUs on the node / ranks on the node (at least 1).
  int default_threads_per_rank() const;
  // After an error only this rank saw: MPI_Abort under MPI (so no rank hangs), else exit.
  [[noreturn]] void abort(int exit_code);

 private:
  std::unique_ptr<MpiEnv> mpi_;  // declared first: outlives comm_
  std::unique_ptr<Comm> comm_;
};

}  // namespace strata
