// The collective watchdog on real ranks: a rank that does not come to a collective is named by
// the others once the deadline passes, and ranks waiting in different collectives (a mismatch)
// are told where each other waits. Each test completes the abandoned operations afterwards, so
// the next test starts with every rank in step.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "parallel/mpi_comm.h"
#include "parallel/mpi_watchdog.h"
#include "parallel/watchdog.h"
#include "parallel/zero.h"
#include "tests/mpi/mpi_test_env.h"

namespace strata {
namespace {

constexpr double kTimeout = 1, kGrace = 1.5;

// Short deadlines for the test, and the defaults back afterwards.
class WatchdogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world_ = MpiComm::world("world");
    dir_ = shared_temp_dir(*world_, "strata_watchdog");
    Watchdog& wd = Watchdog::instance();
    wd.set_run_dir(dir_);
    wd.set_phase(WatchPhase::train);
    wd.set_step(7);
    wd.set_grace(kGrace);
    wd.set_timeout(kTimeout);
  }
  void TearDown() override {
    Watchdog& wd = Watchdog::instance();
    wd.clear_fired();
    wd.set_timeout(120);
    world_->barrier();
    renew_watchdog_comm();  // reports nobody read stay on the old communicator
    std::error_code ec;
    if (world_->rank() == 0) std::filesystem::remove_all(dir_, ec);
    Watchdog::instance().set_run_dir("");
  }
  // Runs `op`, returns the CollectiveTimeout's message ("" if none was thrown).
  template <class F>
  static std::string timeout_of(F op) {
    try {
      op();
    } catch (const CollectiveTimeout& e) {
      Watchdog::instance().clear_fired();
      return e.what();
    }
    return "";
  }

  std::unique_ptr<MpiComm> world_;
  std::string dir_;
};

TEST_F(WatchdogTest, ARankThatDoesNotComeIsNamed) {
  auto group = world_->split(0, world_->rank(), "grp");
  static double value[1] = {1};  // outlives the operation the others abandon
  const auto t0 = std::chrono::steady_clock::now();
  std::string msg;
  if (world_->rank() == 0) {
    // Busy elsewhere past the others' deadline and grace, then completes their operation.
    std::this_thread::sleep_for(std::chrono::duration<double>(kTimeout + kGrace + 0.5));
    Watchdog::instance().set_timeout(30);
    group->all_reduce_sum_double(value, 1);
  } else {
    msg = timeout_of([&] { group->all_reduce_sum_double(value, 1); });
  }
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (world_->rank() == 0) return;
  EXPECT_NE(msg.find("collective timeout at step 7 (train): grp all_reduce #1 did not complete "
                     "within 1 s on world rank " +
                     std::to_string(world_->rank())),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("Did not arrive: world rank 0 (grp rank 0): no answer"), std::string::npos)
      << msg;
  // The ranks that did time out with this one are not named missing.
  EXPECT_EQ(msg.find("Did not arrive: world rank 0 (grp rank 0), "), std::string::npos) << msg;
  EXPECT_GE(took, kTimeout + kGrace - 0.1);
  EXPECT_LT(took, kTimeout + kGrace + 5);
  // The flight record: valid lines, the abandoned operation last and not done.
  std::ifstream f(dir_ + "/flight_" + std::to_string(world_->rank()) + ".jsonl");
  ASSERT_TRUE(f.good());
  std::string line, last;
  while (std::getline(f, line)) {
    EXPECT_EQ(line.front(), '{');
    EXPECT_EQ(line.back(), '}');
    last = line;
  }
  EXPECT_NE(last.find("\"op\":\"all_reduce\",\"group\":\"grp\""), std::string::npos) << last;
  EXPECT_NE(last.find("\"seq\":1,"), std::string::npos) << last;
  EXPECT_NE(last.find("\"t_end\":null,\"done\":false"), std::string::npos) << last;
}

TEST_F(WatchdogTest, RanksInDifferentCollectivesAreToldWhereEachWaits) {
  auto left = world_->split(0, world_->rank(), "left");
  auto right = world_->split(0, world_->rank(), "right");
  static double value[1] = {1};
  const bool odd_one = world_->rank() == 0;
  // Rank 0 skips the all-reduce the others enter, and waits in a barrier they never reach.
  const std::string msg = timeout_of([&] {
    if (odd_one)
      left->barrier();
    else
      right->all_reduce_sum_double(value, 1);
  });
  // Every rank answered, so nobody is missing and each says where the others wait.
  EXPECT_EQ(msg.find("Did not arrive"), std::string::npos) << msg;
  if (odd_one) {
    EXPECT_NE(msg.find("left barrier #1 did not complete"), std::string::npos) << msg;
    EXPECT_NE(msg.find("world rank 1 (left rank 1) waits in right all_reduce #1 at step 7"),
              std::string::npos)
        << msg;
  } else {
    EXPECT_NE(msg.find("right all_reduce #1 did not complete"), std::string::npos) << msg;
    EXPECT_NE(msg.find("world rank 0 (right rank 0) waits in left barrier #1 at step 7"),
              std::string::npos)
        << msg;
  }
  // Complete both abandoned operations: each side now joins the other's.
  Watchdog::instance().set_timeout(30);
  if (odd_one)
    right->all_reduce_sum_double(value, 1);
  else
    left->barrier();
}

// A timeout while a ZeRO engine has a second reduction in flight: unwinding destroys the engine,
// whose destructor waits for that reduction, which fails too (its communicator is abandoned).
// That wait threw from a destructor during unwinding: std::terminate, SIGABRT, and no message
// (seen with a SIGSTOPped rank in e2e rank_lost.sh).
TEST_F(WatchdogTest, AZeroEngineWithReductionsInFlightUnwindsWithoutTerminate) {
  auto group = world_->split(0, world_->rank(), "grp");
  // The slots outlive the engine: the abandoned reductions still reference their buffers.
  static FloatBuffer p0(64, MemCategory::params), g0(64, MemCategory::grads);
  static FloatBuffer p1(64, MemCategory::params), g1(64, MemCategory::grads);
  auto run = [&] {
    std::vector<ZeroUnit> units = {{0, &p0, &g0, 64, {}, false}, {1, &p1, &g1, 64, {}, false}};
    ZeroEngine z(*group, 0, std::move(units), "sgd", OptimizerOptions{});
    z.begin_step();
    z.before(1, UnitPass::backward);
    z.after(1, UnitPass::backward, /*last=*/true);  // reduction #1 in flight
    z.before(0, UnitPass::backward);
    z.after(0, UnitPass::backward, /*last=*/true);  // #2 in flight; waits for #1
  };
  std::string msg;
  if (world_->rank() == 0) {
    std::this_thread::sleep_for(std::chrono::duration<double>(kTimeout + kGrace + 0.5));
    Watchdog::instance().set_timeout(30);
    run();  // matches the others' abandoned reductions
  } else {
    msg = timeout_of(run);
    EXPECT_NE(msg.find("grp iall_reduce #1 did not complete"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace strata
