// The pipeline plan of a job (launch/pipeline_plan.h): stage placement by cost or by
// parallel.pp_layers, the generated or loaded schedule, its simulation, the printed plan, and
// the errors a job that can't be served gets.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "input_error_util.h"
#include "launch/pipeline_plan.h"
#include "models/flops.h"
#include "parallel/schedule_check.h"
#include "parallel/schedule_gen.h"
#include "schedule_test_util.h"

namespace strata {
namespace {

const char* kPp4 = STRATA_SOURCE_DIR "/configs/pp4_1f1b.yaml";

JobConfig job(const std::vector<std::string>& sets = {}) { return load_job_config(kPp4, sets); }

// The units of every stage, in order, cover the model once; each stage holds a block.
void expect_contiguous(const PipelinePlan& plan, int64_t n_layers) {
  int64_t next = 0;
  for (const StagePlan& st : plan.stages) {
    EXPECT_EQ(st.first_unit, next) << "stage " << st.stage;
    EXPECT_GT(st.end_block(n_layers), st.first_block()) << "stage " << st.stage;
    EXPECT_EQ(st.rank, st.stage % plan.pp);
    next = st.end_unit;
  }
  EXPECT_EQ(next, n_layers + 2);
}

TEST(PipelinePlan, FourStagesOneFOneBOverEightMicroBatches) {
  const JobConfig cfg = job();
  const PipelinePlan plan = plan_pipeline(cfg);
  EXPECT_EQ(plan.pp, 4);
  EXPECT_EQ(plan.micro_batches, 8);
  EXPECT_EQ(plan.schedule_name, "1f1b");
  ASSERT_EQ(plan.stages.size(), 4u);
  expect_contiguous(plan, 8);
  EXPECT_TRUE(plan.stages[0].has_embedding());
  EXPECT_EQ(plan.stages[3].end_unit, 10);  // the head
  for (int r = 0; r < 4; ++r) EXPECT_EQ(plan.stages_of_rank(r), std::vector<int>{r});
  for (int64_t u = 0; u < 10; ++u) {
    const StagePlan& st = plan.stages[plan.stage_of_unit(u)];
    EXPECT_TRUE(u >= st.first_unit && u < st.end_unit) << "unit " << u;
  }
  EXPECT_TRUE(is_lowered(plan.schedule));
  EXPECT_EQ(plan.schedule.micro_batches, 8);
  // Unequal stages only add to 1F1B's (p-1)/(m+p-1) = 3/11.
  EXPECT_GE(plan.sim.bubble_fraction, 3.0 / 11 - 1e-12);
  EXPECT_LT(plan.sim.bubble_fraction, 0.5);
}

TEST(PipelinePlan, VocabularyParallel1f1bRunsEachBackwardOneForwardLater) {
  // So the last stage's S all-reduce overlaps a forward (schedule_gen.h make_1f1b, lead).
  const PipelinePlan plan = plan_pipeline(job({"parallel.vocab_parallel=true"}));
  const PipelinePlan plain = plan_pipeline(job());
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(plan.sim.peak_in_flight[r], plain.sim.peak_in_flight[r] + 1) << "rank " << r;
    EXPECT_EQ(plain.sim.peak_in_flight[r], 4 - r) << "rank " << r;
  }
}

TEST(PipelinePlan, StageCostsAreTheSumOfTheirUnits) {
  const JobConfig cfg = job();
  const PipelinePlan plan = plan_pipeline(cfg, 1e9);  // 1 GFLOP/s: seconds = GFLOP
  const FlopShape shape{8 * 256, 256, 256};
  const std::vector<UnitFlops> units = unit_flops(cfg.model, shape);
  for (const StagePlan& st : plan.stages) {
    double fwd = 0, weight = 0;
    for (int64_t u = st.first_unit; u < st.end_unit; ++u) {
      fwd += units[u].forward;
      weight += units[u].backward_weight;
    }
    EXPECT_DOUBLE_EQ(st.forward_flops, fwd);
    EXPECT_DOUBLE_EQ(st.backward_weight_flops, weight);
    EXPECT_DOUBLE_EQ(st.backward_flops, st.backward_input_flops + st.backward_weight_flops);
    EXPECT_DOUBLE_EQ(plan.costs.stage_forward[st.stage], fwd * 1e-9);
  }
  EXPECT_EQ(plan.peak_flops, 1e9);
}

TEST(PipelinePlan, AHeavyHeadGetsALighterLastStage) {
  // A 4096-token vocabulary: the head costs more than a block, so the last stage holds one
  // block where the others hold two or three.
  const PipelinePlan plan = plan_pipeline(job({"model.vocab_size=4096"}));
  int64_t most = 0;
  for (const StagePlan& st : plan.stages) most = std::max(most, st.end_block(8) - st.first_block());
  EXPECT_EQ(plan.stages.back().end_block(8) - plan.stages.back().first_block(), 1);
  EXPECT_GE(most, 3);
}

TEST(PipelinePlan, PpLayersPlaceTheBlocks) {
  const PipelinePlan plan = plan_pipeline(job({"parallel.pp_layers=[1, 3, 3, 1]"}));
  ASSERT_EQ(plan.stages.size(), 4u);
  EXPECT_EQ(plan.stages[0].end_unit, 2);  // embedding + block 0
  EXPECT_EQ(plan.stages[1].first_unit, 2);
  EXPECT_EQ(plan.stages[1].end_unit, 5);
  EXPECT_EQ(plan.stages[3].first_unit, 8);
  EXPECT_EQ(plan.stages[3].first_block(), 7);
}

TEST(PipelinePlan, OneProcessIsOneStageOfEveryUnit) {
  const PipelinePlan plan = plan_pipeline(load_job_config(STRATA_SOURCE_DIR "/configs/tiny.yaml"));
  ASSERT_EQ(plan.stages.size(), 1u);
  EXPECT_EQ(plan.stages[0].first_unit, 0);
  EXPECT_EQ(plan.stages[0].end_unit, 6);
  EXPECT_EQ(plan.micro_batches, 2);
  EXPECT_DOUBLE_EQ(plan.sim.bubble_fraction, 0);
}

TEST(PipelinePlan, InterleavedLoopsTheStagesOverTheRanks) {
  const PipelinePlan plan = plan_pipeline(
      job({"parallel.pp=2", "parallel.schedule=interleaved", "parallel.virtual_stages=2"}));
  ASSERT_EQ(plan.stages.size(), 4u);
  expect_contiguous(plan, 8);
  EXPECT_EQ(plan.stages_of_rank(0), (std::vector<int>{0, 2}));
  EXPECT_EQ(plan.stages_of_rank(1), (std::vector<int>{1, 3}));
  EXPECT_EQ(plan.schedule.stages, 4);
}

TEST(PipelinePlan, MicroBatchesTheScheduleCannotServeNameBothNumbers) {
  // global_batch 16 / micro_batch 8 = 2 micro-batches for 4 ranks.
  test::expect_input_error([] { plan_pipeline(job({"train.global_batch=16"})); },
                           "got 2 micro-batches for pp=4");
  test::expect_input_error([] { plan_pipeline(job({"train.global_batch=16"})); },
                           "train.global_batch / (parallel.dp * train.micro_batch) = 16 / (1 * 8)");
  // interleaved needs m % pp == 0.
  test::expect_input_error(
      [] {
        plan_pipeline(job({"parallel.pp=4", "parallel.schedule=interleaved",
                           "parallel.virtual_stages=2", "train.global_batch=48"}));
      },
      "parallel.schedule: ");
}

TEST(PipelinePlan, ConfigsBuiltInCodeGetTheJobFileRules) {
  JobConfig cfg = job();
  cfg.parallel.virtual_stages = 3;
  cfg.parallel.schedule = "interleaved";
  test::expect_input_error([&] { plan_pipeline(cfg); },
                           "parallel.pp * parallel.virtual_stages = 4 * 3 = 12 stages, more than "
                           "model.n_layers = 8");
  cfg = job();
  cfg.parallel.pp_layers = {2, 2, 2, 1};
  test::expect_input_error(
      [&] { plan_pipeline(cfg); },
      "parallel.pp_layers: the entries sum to 7 blocks, but model.n_layers = 8");
  cfg = job();
  cfg.parallel.schedule = "interleaved";
  test::expect_input_error([&] { plan_pipeline(cfg); }, "parallel.virtual_stages >= 2");
}

class ScheduleFile : public test::ScheduleFileTest {};

TEST_F(ScheduleFile, ItsOwnCsvGivesTheSamePlan) {
  const JobConfig cfg = job();
  const PipelinePlan plan = plan_pipeline(cfg);
  write(write_schedule_csv(plan.schedule));
  const JobConfig from_file = job({"parallel.schedule_file=" + path_});
  const PipelinePlan again = plan_pipeline(from_file);
  EXPECT_EQ(again.schedule, plan.schedule);
  EXPECT_EQ(again.schedule_name, path_);
  EXPECT_DOUBLE_EQ(again.sim.makespan, plan.sim.makespan);
  // The printed plans differ only in the line naming the schedule.
  const std::string a = format_pipeline_plan(plan, cfg), b = format_pipeline_plan(again, from_file);
  EXPECT_EQ(a.substr(a.find('\n')), b.substr(b.find('\n')));
}

TEST_F(ScheduleFile, AComputeOnlyFileIsLowered) {
  write(write_schedule_csv(make_schedule(ScheduleKind::gpipe, 4, 8)));
  const PipelinePlan plan = plan_pipeline(job({"parallel.schedule_file=" + path_}));
  EXPECT_EQ(plan.schedule, lower_schedule(make_schedule(ScheduleKind::gpipe, 4, 8)));
}

TEST_F(ScheduleFile, ItsShapeMustBeTheJobs) {
  write(write_schedule_csv(lower_schedule(make_schedule(ScheduleKind::one_f_one_b, 2, 8))));
  test::expect_input_error([&] { plan_pipeline(job({"parallel.schedule_file=" + path_})); },
                           "is for pp=2, but parallel.pp = 4");
  write(write_schedule_csv(lower_schedule(make_schedule(ScheduleKind::one_f_one_b, 4, 4))));
  test::expect_input_error([&] { plan_pipeline(job({"parallel.schedule_file=" + path_})); },
                           "has micro_batches=4, but the job runs 8 micro-batches per step");
  write(write_schedule_csv(lower_schedule(make_schedule(ScheduleKind::interleaved, 4, 8, 2))));
  test::expect_input_error([&] { plan_pipeline(job({"parallel.schedule_file=" + path_})); },
                           "has stages=8 (2 per rank), but parallel.pp * parallel.virtual_stages "
                           "= 4 * 1 = 4");
}

TEST_F(ScheduleFile, ABrokenFileNamesItsLine) {
  // The last rank's first F and B swapped: B before its F, at the line that now holds the B.
  std::string csv =
      write_schedule_csv(lower_schedule(make_schedule(ScheduleKind::one_f_one_b, 4, 8)));
  const size_t f = csv.find("\n3,1,F,3,0,\n"), b = csv.find("\n3,2,B,3,0,\n");
  ASSERT_NE(f, std::string::npos);
  ASSERT_NE(b, std::string::npos);
  csv[f + 5] = 'B';
  csv[b + 5] = 'F';
  write(csv);
  const auto line = 2 + std::count(csv.begin(), csv.begin() + static_cast<std::ptrdiff_t>(f), '\n');
  test::expect_input_error(
      [&] { plan_pipeline(job({"parallel.schedule_file=" + path_})); },
      path_ + ":" + std::to_string(line) +
          ": pipeline schedule: rank 3 action #1 (3B0): backward before its F");
  test::expect_input_error(
      [&] { plan_pipeline(job({"parallel.schedule_file=" + path_ + ".missing"})); },
      "cannot open the pipeline schedule file");
}

TEST(PipelinePlan, PrintsPlacementScheduleAndBubbles) {
  const JobConfig cfg = job();
  const std::string text = format_pipeline_plan(plan_pipeline(cfg), cfg);
  EXPECT_NE(text.find("pipeline plan: pp=4, virtual_stages=1, 8 micro-batches per step, "
                      "schedule 1f1b\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("stage | rank | units | holds"), std::string::npos) << text;
  EXPECT_NE(text.find("| embedding, block"), std::string::npos) << text;
  EXPECT_NE(text.find(", head "), std::string::npos) << text;
  EXPECT_NE(text.find("| rank 0 "), std::string::npos) << text;
  EXPECT_NE(text.find("bubble fraction"), std::string::npos) << text;
  EXPECT_NE(text.find("ideal bubble (p-1)/(m+p-1) = 3/11 = 0.2727 (27.3%)"), std::string::npos)
      << text;
}

}  // namespace
}  // namespace strata
