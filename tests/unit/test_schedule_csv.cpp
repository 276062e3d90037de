// Schedule files (parallel/schedule.h CSV form, parallel/schedule_file.h): round trip, strict
// parsing naming FILE:LINE, and the validator's and simulator's errors mapped back to the line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "input_error_util.h"
#include "parallel/schedule_check.h"
#include "parallel/schedule_file.h"
#include "parallel/schedule_gen.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
using test::expect_input_error;

const std::string kPreamble = "# strata pipeline schedule: pp=2 stages=2 micro_batches=1\n";
const std::string kHeader = "rank,index,action,stage,micro_batch,peer\n";

// A valid lowered pp=2, m=1 schedule on lines 3..12.
const std::string kValidRows =
    "0,0,F,0,0,\n"            // 3
    "0,1,SEND_F,0,0,1\n"      // 4
    "0,2,RECV_B,0,0,1\n"      // 5
    "0,3,B,0,0,\n"            // 6
    "0,4,REDUCE_GRAD,0,,\n"   // 7
    "1,0,RECV_F,1,0,0\n"      // 8
    "1,1,F,1,0,\n"            // 9
    "1,2,B,1,0,\n"            // 10
    "1,3,SEND_B,1,0,0\n"      // 11
    "1,4,REDUCE_GRAD,1,,\n";  // 12

Schedule load(const std::string& text) { return load_schedule_csv(text, "job.csv"); }

TEST(ScheduleCsv, EveryGeneratorRoundTrips) {
  for (ScheduleKind kind : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b,
                            ScheduleKind::interleaved, ScheduleKind::zb_h1})
    for (int pp : {1, 2, 4}) {
      Schedule s = make_schedule(kind, pp, 8, kind == ScheduleKind::interleaved ? 2 : 1);
      EXPECT_EQ(load(write_schedule_csv(s)), s) << schedule_kind_name(kind) << " pp=" << pp;
      Schedule lowered = lower_schedule(s);
      EXPECT_EQ(load(write_schedule_csv(lowered)), lowered) << schedule_kind_name(kind);
    }
}

TEST(ScheduleCsv, WrittenFormIsTheDocumentedOne) {
  Schedule s = load(kPreamble + kHeader + kValidRows);
  EXPECT_EQ(write_schedule_csv(s), kPreamble + kHeader + kValidRows);
  EXPECT_EQ(s.ranks[0][1], (Action{ActionType::SEND_F, 0, 0, 1}));
  EXPECT_EQ(s.ranks[0][4], (Action{ActionType::REDUCE_GRAD, 0, kNoMicroBatch, kNoPeer}));
}

TEST(ScheduleCsv, FileRoundTripAndUnreadableFile) {
  fs::path path =
      fs::temp_directory_path() / ("strata_schedule_" + std::to_string(::getpid()) + ".csv");
  Schedule s = lower_schedule(make_zb_h1(4, 8));
  {
    std::ofstream out(path, std::ios::binary);
    out << write_schedule_csv(s);
  }
  EXPECT_EQ(load_schedule_file(path.string()), s);
  fs::remove(path);
  expect_input_error([&] { load_schedule_file(path.string()); },
                     path.string() + ": cannot open the pipeline schedule file");
}

TEST(ScheduleCsv, FormatErrorsNameFileAndLine) {
  auto expect = [](const std::string& text, const std::string& needle) {
    expect_input_error([&] { load(text); }, needle);
  };
  expect("", "job.csv:1: expected the line '# strata pipeline schedule: ...'");
  expect("rank,index\n", "job.csv:1: expected the first line");
  expect("# strata pipeline schedule: pp=2 stages=2\n" + kHeader, "job.csv:1: expected '");
  expect("# strata pipeline schedule: pp=2 stages=3 micro_batches=1\n",
         "job.csv:1: stages (3) must be a multiple of pp (2)");
  expect("# strata pipeline schedule: pp=x stages=2 micro_batches=1\n",
         "job.csv:1: expected a non-negative integer for pp, got 'x'");
  expect(kPreamble, "job.csv:2: expected the header");
  expect(kPreamble + "rank,index,action,stage,mb,peer\n", "job.csv:2: expected the header");
  expect(kPreamble + kHeader + "0,0,X,0,0,\n", "job.csv:3: unknown action 'X'");
  expect(kPreamble + kHeader + "0,0,F,zero,0,\n",
         "job.csv:3: expected a non-negative integer for stage, got 'zero'");
  expect(kPreamble + kHeader + "0,0,F,0,-1,\n",
         "job.csv:3: expected a non-negative integer for micro_batch, got '-1'");
  expect(kPreamble + kHeader + "0,0,F,0,0\n", "job.csv:3: expected 6 comma-separated fields");
  expect(kPreamble + kHeader + "0,0,F,0,0,,\n", "got 7");
  expect(kPreamble + kHeader + "2,0,F,0,0,\n", "job.csv:3: rank 2 out of range [0, 2)");
  expect(kPreamble + kHeader + "0,1,F,0,0,\n", "job.csv:3: expected index 0 for rank 0, got 1");
  expect(kPreamble + kHeader + "1,0,F,1,0,\n0,0,F,0,0,\n",
         "job.csv:4: rows must be grouped by rank in ascending order");
  expect(kPreamble + kHeader + "0,0,F,0,0,1\n", "job.csv:3: expected an empty peer for F");
  expect(kPreamble + kHeader + "0,0,SEND_F,0,0,\n",
         "job.csv:3: expected a non-negative integer for peer");
  expect(kPreamble + kHeader + "0,0,REDUCE_GRAD,0,0,\n",
         "job.csv:3: expected an empty micro_batch for REDUCE_GRAD");
  expect(kPreamble + kHeader + "0,0,F,0,0,\r\n0,1,F,0,1x,\n",
         "job.csv:4: expected a non-negative integer for micro_batch, got '1x'");
}

TEST(ScheduleCsv, RuleViolationsNameTheLineOfTheAction) {
  std::string text = kPreamble + kHeader + kValidRows;
  EXPECT_NO_THROW(load(text));
  // Rank 1's B ahead of its F: the B, now on line 9, breaks "every F before its backward".
  std::string b_before_f = text;
  b_before_f.replace(b_before_f.find("1,1,F,1,0,\n1,2,B,1,0,\n"), 22, "1,1,B,1,0,\n1,2,F,1,0,\n");
  expect_input_error([&] { load(b_before_f); },
                     "job.csv:9: pipeline schedule: rank 1 action #1 "
                     "(1B0): backward before its F");
  // Unmatched: rank 1's SEND_B dropped (rank 1 renumbered), rank 0's RECV_B on line 5 unmatched.
  std::string unmatched = text;
  unmatched.replace(unmatched.find("1,3,SEND_B,1,0,0\n1,4,"), 21, "1,3,");
  expect_input_error([&] { load(unmatched); },
                     "job.csv:5: pipeline schedule: rank 0 action #2 "
                     "(0RECV_B0): unmatched");
  // A vocabulary pass on one rank only, named on its line.
  std::string stray = text + "1,5,S,1,0,\n";
  expect_input_error([&] { load(stray); }, "job.csv:13: ");
  expect_input_error([&] { load(stray); }, "a vocabulary-parallel pass, but rank 0 has none");
}

TEST(ScheduleCsv, DeadlockAndMissingMicroBatch) {
  // Rank 0 waits for the gradient (line 3) before sending the activation rank 1 needs.
  std::string deadlock = kPreamble + kHeader +
                         "0,0,RECV_B,0,0,1\n0,1,F,0,0,\n0,2,SEND_F,0,0,1\n0,3,B,0,0,\n"
                         "0,4,REDUCE_GRAD,0,,\n" +
                         kValidRows.substr(kValidRows.find("1,0,RECV_F"));
  expect_input_error([&] { load(deadlock); }, "job.csv:3: pipeline schedule deadlocks");
  expect_input_error([&] { load(deadlock); }, "cycle: rank 0 -> rank 1 -> rank 0");
  // Two micro-batches declared, one scheduled: no single line to blame, the file is named.
  std::string missing =
      "# strata pipeline schedule: pp=2 stages=2 micro_batches=2\n" + kHeader + kValidRows;
  expect_input_error([&] { load(missing); },
                     "job.csv: pipeline schedule: stage 0 micro-batch 1 has no F");
}

}  // namespace
}  // namespace strata
