// main() for the multi-rank GoogleTest executables (run as mpirun -np N exe). Every rank runs
// every test; rank 0 prints the usual report, the other ranks print only their failures, prefixed
// with the rank. The results are reduced so that a failure on ANY rank makes every rank exit 1.
// A test must keep every rank on the same sequence of collectives: a fatal ASSERT that returns on
// one rank only leaves the others waiting in the next collective until ctest's TIMEOUT, so tests
// compare with EXPECT after their collectives. An exception that escapes a test body is the
// same trap, and cannot be avoided by the test: the rank that caught it ends the whole job at
// once, naming the test, rather than leaving the others to ctest's TIMEOUT.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <string>

#include "parallel/mpi_env.h"
#include "tests/mpi/mpi_test_env.h"

namespace strata {

namespace {

MpiEnv* g_env = nullptr;

// A listener of one rank that knows the running test's name. The name is kept here:
// UnitTest::current_test_info() would take the lock gtest holds while it reports a result, and
// deadlock.
class RankListener : public ::testing::EmptyTestEventListener {
 public:
  explicit RankListener(int rank) : rank_(rank) {}
  void OnTestStart(const ::testing::TestInfo& t) override {
    test_ = std::string(t.test_suite_name()) + "." + t.name();
  }

 protected:
  int rank_;
  std::string test_;
};

class RankFailurePrinter : public RankListener {
 public:
  using RankListener::RankListener;
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] FAILED %s at %s:%d\n%s\n", rank_, test_.c_str(),
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.message());
    std::fflush(stderr);
  }
};

// gtest reports an escaped exception as a failure whose message begins "C++ exception with
// description" (or "Unknown C++ exception"); the other ranks may be waiting in a collective
// this rank will never reach.
class ExceptionAborter : public RankListener {
 public:
  using RankListener::RankListener;
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    const std::string message = r.message();
    if (!r.failed() || message.find("C++ exception") == std::string::npos) return;
    std::fprintf(stderr,
                 "[rank %d] an exception escaped %s: ending the job (the other ranks may be "
                 "waiting in a collective this rank will not reach)\n",
                 rank_, test_.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
};

}  // namespace

MpiEnv& test_mpi_env() { return *g_env; }

}  // namespace strata

int main(int argc, char** argv) {
  strata::MpiEnv env(&argc, &argv);
  strata::g_env = &env;
  ::testing::InitGoogleTest(&argc, argv);
  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  if (env.world_rank() != 0) {
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new strata::RankFailurePrinter(env.world_rank()));
  }
  listeners.Append(new strata::ExceptionAborter(env.world_rank()));  // after the printers
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int failed_ranks = failed;
  MPI_Allreduce(MPI_IN_PLACE, &failed_ranks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (env.world_rank() == 0 && failed_ranks > 0)
    std::fprintf(stderr, "%d of %d ranks had failures (see the [rank N] lines)\n", failed_ranks,
                 env.world_size());
  return failed_ranks > 0 ? 1 : 0;
}
