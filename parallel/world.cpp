#include "parallel/world.h"

#include <cstdlib>

#include "parallel/self_comm.h"

namespace strata {

World::World(int* argc, char*** argv, Mode mode) {
  const bool use_mpi = mode == Mode::mpi || (mode == Mode::automatic && launched_under_mpi());
  if (use_mpi) {
    mpi_ = std::make_unique<MpiEnv>(argc, argv);
    comm_ = mpi_->world("world");
  } else {
    comm_ = std::make_unique<SelfComm>("world");
  }
}

World::~World() { comm_.reset(); }  // before MPI_Finalize in ~MpiEnv

int World::default_threads_per_rank() const {
  return mpi_ ? mpi_->default_threads_per_rank() : affinity_cpu_count();
}

void World::abort(int exit_code) {
  if (mpi_ && mpi_->world_size() > 1) MpiEnv::abort(exit_code);
  std::exit(exit_code);
}

}  // namespace strata
