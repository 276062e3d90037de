// A job that cannot fit is refused before anything is allocated, naming the keys that size it
// (issue 9: micro_batch = 10^8 and huge models ended in std::bad_alloc, exit 1, no key named).
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "launch/job_config.h"
#include "launch/memory_estimate.h"

namespace strata {
namespace {

JobConfig job(const std::vector<std::string>& sets) {
  return parse_job_config("data:\n  train: x\n", "job.yaml", sets);
}

std::string refusal(const JobConfig& c, int ranks_on_node = 1) {
  try {
    check_job_fits_memory(c, ranks_on_node);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(MemoryEstimate, TinyJobFits) { EXPECT_EQ(refusal(job({})), ""); }

TEST(MemoryEstimate, ShardingDividesWhatZeroShards) {
  const MemoryEstimate s0 = estimate_rank_memory(job({"parallel.dp=4", "train.global_batch=32"}));
  const MemoryEstimate s3 = estimate_rank_memory(
      job({"parallel.dp=4", "train.global_batch=32", "parallel.zero_stage=3"}));
  EXPECT_DOUBLE_EQ(s3.params * 4, s0.params);
  EXPECT_DOUBLE_EQ(s3.grads * 4, s0.grads);
  EXPECT_DOUBLE_EQ(s3.optimizer * 4, s0.optimizer);
  EXPECT_DOUBLE_EQ(s0.params, 4.0 * static_cast<double>(job({}).model.num_parameters()));
}

// With stages a rank holds only its own units: the bound is the lightest rank's parameters (it
// counted the whole model on every rank before, refusing pipeline jobs that fit).
TEST(MemoryEstimate, PipelineStagesHoldTheirOwnUnits) {
  const std::vector<std::string> deep = {"model.n_layers=8", "train.global_batch=8",
                                         "train.micro_batch=1"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), deep.begin(), deep.end());
    return estimate_rank_memory(job(more));
  };
  const MemoryEstimate one = with({}), four = with({"parallel.pp=4"});
  EXPECT_LT(four.params * 3, one.params);
  EXPECT_GT(four.params, 0);
  EXPECT_DOUBLE_EQ(four.grads, four.params);
}

TEST(MemoryEstimate, HugeMicroBatchNamesItsKeys) {
  const std::string m =
      refusal(job({"train.micro_batch=100000000", "train.global_batch=100000000"}));
  EXPECT_NE(m.find("job.yaml: the job needs at least"), std::string::npos) << m;
  EXPECT_NE(m.find("train.micro_batch (100000000) x data.seq_len"), std::string::npos) << m;
}

TEST(MemoryEstimate, HugeModelNamesTheModelKeys) {
  const std::string m = refusal(
      job({"model.dim=65536", "model.n_layers=64", "model.n_heads=64", "model.n_kv_heads=64"}));
  EXPECT_NE(m.find("the model size (model.vocab_size, model.dim"), std::string::npos) << m;
  EXPECT_NE(m.find("this machine has"), std::string::npos) << m;
}

TEST(MemoryEstimate, GlobalBatchOfTokensIsCounted) {
  const std::string m = refusal(
      job({"train.global_batch=2147483647", "train.micro_batch=1", "data.seq_len=16777216"}));
  EXPECT_NE(m.find("train.global_batch (2147483647) x data.seq_len"), std::string::npos) << m;
}

TEST(MemoryEstimate, MaxMemoryCapIsTheLimitWhenSet) {
  const std::string m = refusal(
      job({"model.dim=1024", "model.n_heads=8", "model.n_kv_heads=8", "train.max_memory_mb=16"}));
  EXPECT_NE(m.find("train.max_memory_mb allows 0.0156 GiB"), std::string::npos) << m;
}

TEST(MemoryEstimate, RanksOnTheNodeShareIt) {
  // Sized to about 60% of the machine: fits one rank, not 16 on the node.
  const double machine = machine_memory_bytes();
  const int64_t ffn = static_cast<int64_t>(machine * 0.6 / (4.0 * 4 * 3 * 4096 * 2));
  const JobConfig c = job({"model.dim=4096", "model.n_heads=32", "model.n_kv_heads=32",
                           "model.n_layers=2", "model.ffn_dim=" + std::to_string(ffn)});
  EXPECT_EQ(refusal(c, 1), "");
  EXPECT_NE(refusal(c, 16).find("for 16 rank(s) on the node"), std::string::npos);
}

}  // namespace
}  // namespace strata
