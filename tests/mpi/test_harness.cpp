// The multi-rank test main itself (tests/mpi/mpi_gtest_main.cpp). The one test here is disabled:
// it fails on purpose, and runs only as the ctest mpi_harness_exception_ends_the_job, which
// passes when the job ends at once with the harness's message (rather than hanging until the
// TIMEOUT, as it did before the harness ended the job on an escaped exception).
#include <gtest/gtest.h>
#include <mpi.h>

#include <stdexcept>


namespace strata {
namespace {

TEST(MpiHarness, DISABLED_AnExceptionOnOneRankEndsTheJob) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 1) throw std::runtime_error("thrown on rank 1 before the barrier");
  MPI_Barrier(MPI_COMM_WORLD);  // rank 1 never arrives
}

}  // namespace
}  // namespace strata
