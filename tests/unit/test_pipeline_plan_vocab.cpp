// The pipeline plan with parallel.vocab_parallel (launch/pipeline_plan.h): the vocabulary passes
// in every generator's schedule, their costs from the head's FLOPs over pp, the stage split
// without the head and the embedding, the printed plan, and schedule files with and without the
// passes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "input_error_util.h"
#include "launch/pipeline_plan.h"
#include "models/flops.h"
#include "parallel/schedule_check.h"
#include "parallel/schedule_gen.h"
#include "parallel/schedule_vocab.h"
#include "schedule_test_util.h"

namespace strata {
namespace {

const char* kPp4 = STRATA_SOURCE_DIR "/configs/pp4_1f1b.yaml";

JobConfig job(std::vector<std::string> sets = {}) {
  sets.insert(sets.begin(), "parallel.vocab_parallel=true");
  return load_job_config(kPp4, sets);
}

std::vector<int64_t> blocks_of(const PipelinePlan& plan, int64_t n_layers) {
  std::vector<int64_t> counts;
  for (const StagePlan& st : plan.stages)
    counts.push_back(st.end_block(n_layers) - st.first_block());
  return counts;
}

TEST(PipelinePlanVocab, EveryScheduleGetsThePasses) {
  const std::vector<std::vector<std::string>> schedules = {
      {"parallel.schedule=gpipe"},
      {"parallel.schedule=1f1b"},
      {"parallel.schedule=zb-h1"},
      {"parallel.schedule=interleaved", "parallel.virtual_stages=2"}};
  for (const auto& sets : schedules) {
    const PipelinePlan plan = plan_pipeline(job(sets));
    SCOPED_TRACE(plan.schedule_name);
    EXPECT_TRUE(plan.vocab_parallel);
    EXPECT_TRUE(has_vocab_passes(plan.schedule));
    EXPECT_TRUE(is_lowered(plan.schedule));
    EXPECT_NO_THROW(validate_schedule(plan.schedule));
    EXPECT_GT(plan.sim.bubble_fraction, 0);
    EXPECT_LT(plan.sim.bubble_fraction, 0.5);
  }
}

TEST(PipelinePlanVocab, PassCostsAreOneShardOfTheHead) {
  const JobConfig cfg = job();
  const PipelinePlan plan = plan_pipeline(cfg, 1e9);  // seconds = GFLOP
  const UnitFlops head = head_flops(cfg.model, 8 * 256, /*vocab_split=*/true);
  EXPECT_DOUBLE_EQ(plan.costs.vocab_s, (head.forward + head.backward_input) / 4 * 1e-9);
  // T: the weight gradient, its logits recomputed (counted in flops.h's backward_weight).
  EXPECT_DOUBLE_EQ(plan.costs.vocab_t, head.backward_weight / 4 * 1e-9);
  EXPECT_DOUBLE_EQ(plan.costs.embed_f, 8 * 256 * 128 * 1e-9);
  EXPECT_DOUBLE_EQ(plan.costs.embed_b, plan.costs.embed_f);
  // The last stage's costs are its blocks' alone: the head is in S and T.
  const FlopShape shape{8 * 256, 256, 256};
  const StagePlan& last = plan.stages.back();
  double forward = 0;
  for (int64_t b = last.first_block(); b < last.end_block(8); ++b)
    forward += block_flops(cfg.model, b, shape).forward;
  EXPECT_DOUBLE_EQ(last.forward_flops, forward);
  EXPECT_EQ(last.end_unit, 10);  // the unit range still ends with the head
}

TEST(PipelinePlanVocab, TheSplitBalancesTheBlocksAlone) {
  // A 4096-token vocabulary leaves the last stage one block without vocabulary parallelism
  // (docs/PIPELINE.md); with it the head costs every rank alike and the split is the blocks'.
  const std::vector<int64_t> small = blocks_of(plan_pipeline(job()), 8);
  const std::vector<int64_t> large = blocks_of(plan_pipeline(job({"model.vocab_size=4096"})), 8);
  EXPECT_EQ(large, small);
  EXPECT_GE(large.back(), 2);
  const PipelinePlan plain = plan_pipeline(
      load_job_config(kPp4, {"model.vocab_size=4096", "parallel.vocab_parallel=false"}));
  EXPECT_EQ(blocks_of(plain, 8).back(), 1);
}

TEST(PipelinePlanVocab, PrintsThePassesAndTheirCosts) {
  const JobConfig cfg = job();
  const std::string text = format_pipeline_plan(plan_pipeline(cfg), cfg);
  for (const char* piece :
       {"vocabulary parallel: the embedding and the head + loss split by vocabulary rows over all "
        "4 ranks; each rank per micro-batch: S ",
        "(EMBED_F, S, EMBED_B collectives over all ranks)\n", "0EMBED_F0", "3S0", "3T0",
        "0EMBED_B7", "bubble fraction"})
    EXPECT_NE(text.find(piece), std::string::npos) << piece << "\n" << text;
  EXPECT_EQ(text.find(", head"), std::string::npos) << text;
  EXPECT_EQ(text.find("embedding, "), std::string::npos) << text;
}

TEST(PipelinePlanVocab, OneProcessRunsEveryPassLocally) {
  const PipelinePlan plan = plan_pipeline(
      load_job_config(STRATA_SOURCE_DIR "/configs/tiny.yaml", {"parallel.vocab_parallel=true"}));
  EXPECT_TRUE(has_vocab_passes(plan.schedule));
  EXPECT_DOUBLE_EQ(plan.sim.bubble_fraction, 0);
}

class VocabScheduleFile : public test::ScheduleFileTest {};

TEST_F(VocabScheduleFile, ItsOwnCsvGivesTheSamePlan) {
  const JobConfig cfg = job();
  const PipelinePlan plan = plan_pipeline(cfg);
  write(write_schedule_csv(plan.schedule));
  const JobConfig from_file = job({"parallel.schedule_file=" + path_});
  const PipelinePlan again = plan_pipeline(from_file);
  EXPECT_EQ(again.schedule, plan.schedule);
  const std::string a = format_pipeline_plan(plan, cfg), b = format_pipeline_plan(again, from_file);
  EXPECT_EQ(a.substr(a.find('\n')), b.substr(b.find('\n')));
  // The same file without the key: refused, naming both.
  test::expect_input_error(
      [&] { plan_pipeline(load_job_config(kPp4, {"parallel.schedule_file=" + path_})); },
      "holds vocabulary-parallel passes (S, T, EMBED_F, EMBED_B), but parallel.vocab_parallel "
      "is false");
}

TEST_F(VocabScheduleFile, AComputeOnlyFileGetsThePassesPlaced) {
  const Schedule compute = make_schedule(ScheduleKind::zb_h1, 4, 8);
  write(write_schedule_csv(compute));
  const PipelinePlan plan = plan_pipeline(job({"parallel.schedule_file=" + path_}));
  EXPECT_EQ(plan.schedule, lower_schedule(add_vocab_passes(compute, plan.costs)));
}

TEST_F(VocabScheduleFile, ALoweredFileWithoutThePassesIsRefused) {
  write(write_schedule_csv(lower_schedule(make_schedule(ScheduleKind::one_f_one_b, 4, 8))));
  test::expect_input_error([&] { plan_pipeline(job({"parallel.schedule_file=" + path_})); },
                           "is lowered without vocabulary-parallel passes, but "
                           "parallel.vocab_parallel is true");
}

}  // namespace
}  // namespace strata
