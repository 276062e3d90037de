// The watchdog's single-process parts: deadlines per phase, the flight recorder's ring and its
// JSON lines, and the STRATA_FAULT parser. The timeouts themselves need ranks: tests/mpi.
#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "core/error.h"
#include "core/stop.h"
#include "launch/fault_injection.h"
#include "parallel/flight_recorder.h"
#include "parallel/watchdog.h"

namespace strata {
namespace {

TEST(Watchdog, DeadlineGrowsInStartupAndCheckpointAndShrinksBackOnStop) {
  Watchdog& wd = Watchdog::instance();
  wd.set_timeout(10);
  wd.set_phase(WatchPhase::startup);
  EXPECT_DOUBLE_EQ(wd.deadline(), 50);
  wd.set_phase(WatchPhase::train);
  EXPECT_DOUBLE_EQ(wd.deadline(), 10);
  {
    const WatchPhaseScope io(WatchPhase::checkpoint);
    EXPECT_DOUBLE_EQ(wd.deadline(), 50);
    set_stop_signal(15);  // the stop's checkpoint gets the plain deadline
    EXPECT_DOUBLE_EQ(wd.deadline(), 10);
    clear_stop_signal();
  }
  EXPECT_EQ(wd.phase(), WatchPhase::train);
  EXPECT_DOUBLE_EQ(wd.grace(), 5);  // the deadline clamped to [1, 5] s
  wd.set_timeout(120);
}

TEST(FlightRecorder, KeepsTheLastRecordsAsJsonLines) {
  FlightRecorder rec(4);
  auto group = std::make_shared<CommGroup>(CommGroup{"dp", 1, {0, 1}});
  uint64_t ids[6];
  for (int i = 0; i < 6; ++i) {
    FlightRecord r;
    r.seq = static_cast<uint64_t>(i + 1);
    r.op = "all_reduce";
    r.group = group;
    r.bytes = 8;
    r.step = 3;
    r.phase = "train";
    ids[i] = rec.begin(r);
    if (i < 5) rec.complete(ids[i]);
  }
  EXPECT_EQ(rec.find(ids[1]), nullptr);  // left the ring
  ASSERT_NE(rec.find(ids[5]), nullptr);
  std::istringstream in(rec.jsonl(7));
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(in, line)) lines.push_back(line);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_NE(lines[0].find("\"rank\":7,\"id\":3,\"op\":\"all_reduce\",\"group\":\"dp\""),
            std::string::npos)
      << lines[0];
  EXPECT_NE(lines[0].find("\"group_rank\":1,\"group_size\":2,\"seq\":3,"), std::string::npos);
  EXPECT_NE(lines[0].find("\"done\":true}"), std::string::npos) << lines[0];
  EXPECT_NE(lines[3].find("\"seq\":6,"), std::string::npos) << lines[3];
  EXPECT_NE(lines[3].find("\"t_end\":null,\"done\":false}"), std::string::npos) << lines[3];
}

TEST(FaultInjection, ParsesAStallAndRefusesAnythingElse) {
  const StallFault f = parse_fault("stall:rank=1,step=3,seconds=600");
  EXPECT_EQ(f.rank, 1);
  EXPECT_EQ(f.step, 3);
  EXPECT_DOUBLE_EQ(f.seconds, 600);
  for (const char* bad : {"crash:rank=1", "stall:rank=1,step=3", "stall:rank=-1,step=3,seconds=1",
                          "stall:rank=1,step=0,seconds=1", "stall:rank=1,step=3,seconds=x",
                          "stall:rank=1,step=3,seconds=1,color=red", "stall:rank"})
    EXPECT_THROW(parse_fault(bad), InputError) << bad;
}

}  // namespace
}  // namespace strata
