#pragma once
// What the pipeline and vocabulary-parallel tests under mpirun share: a corpus in a directory
// every rank sees, a small 8-block job on it, the single-process reference every rank trains
// itself (cached per shape), and the comparison of a parallel run's losses and of this rank's
// parameters — by tensor name and global offset, so any layout (stages, ZeRO shards, vocabulary
// shards) is held against the one process.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "launch/job_config.h"
#include "launch/trainer.h"
#include "mpi_test_env.h"
#include "tests/test_corpus.h"
#include "tests/trainer_test_util.h"

namespace strata::test {

constexpr int kPipelineSteps = 20;

struct Reference {
  std::vector<double> losses;
  std::map<std::string, std::vector<float>> tensors;  // by name, whole
  double val_loss = 0;
};

class PipelineFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    world_ = test_mpi_env().world();
    dir_ = shared_temp_dir(*world_, "strata_pp");
    ASSERT_FALSE(dir_.empty());
    if (world_->rank() == 0) {
      std::string text;
      for (int i = 0; i < 2000; ++i)
        text += "stage " + std::to_string(i * 613 % 509) + (i % 3 ? " bubble flush\n" : " W.\n");
      write_test_corpus(dir_, text, 3000);
    }
    world_->barrier();
  }
  void TearDown() override {
    world_->barrier();
    if (world_->rank() == 0) std::filesystem::remove_all(dir_);
  }

  // 8 blocks: pp 4 with 2 virtual stages still gives every stage one. m micro-batches of one
  // sequence per data-parallel rank. lr 2e-3: at 5e-3 the tied model with a global batch of 4
  // is chaotic enough (a gradient-norm spike of 24 at step 11) that data parallelism alone
  // drifts 5e-4 from one process by step 14; at 2e-3 every layout stays within 2e-6.
  JobConfig config(int m, const std::string& run, std::vector<std::string> sets = {}) const {
    const std::string yaml = R"(
model: {vocab_size: 256, dim: 32, n_layers: 8, n_heads: 4, n_kv_heads: 2, ffn_dim: 48,
        layer_pattern: LLSL, linear_attention: {chunk_size: 8}}
data: {seq_len: 16}
train: {steps: 20, micro_batch: 1, eval_every: 0, eval_batches: 3}
optim: {lr: 2.0e-3, warmup_steps: 2}
checkpoint: {every: 0, keep_last: 0, resume: never}
)";
    int dp = 1;
    for (const auto& s : sets)
      if (s.rfind("parallel.dp=", 0) == 0) dp = std::stoi(s.substr(12));
    sets.insert(sets.begin(), "train.global_batch=" + std::to_string(m * dp));
    return corpus_job(yaml, "pipeline_test.yaml", dir_, run, std::move(sets));
  }

  // One process on the same global batch (dp ranks' micro-batches in one), with the model
  // settings `model_sets` (e.g. tied embeddings), cached: every test writes the same corpus.
  const Reference& reference(int m, int dp, const std::vector<std::string>& model_sets = {}) {
    static std::map<std::string, Reference> cache;
    std::string key = std::to_string(m) + "x" + std::to_string(dp);
    for (const auto& s : model_sets) key += " " + s;
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    std::vector<std::string> sets = model_sets;
    sets.push_back("train.global_batch=" + std::to_string(m * dp));
    Trainer ref(config(m * dp, "ref_r" + std::to_string(world_->rank()), sets));
    Reference r;
    r.losses = train_losses(ref, kPipelineSteps);
    for (auto& u : ref.model().units())
      for (const auto& t : u.tensors())
        r.tensors[t.name].assign(u.params().data() + t.offset,
                                 u.params().data() + t.offset + t.numel);
    r.val_loss = ref.evaluate();
    return cache.emplace(key, std::move(r)).first->second;
  }

  static void expect_losses(const std::vector<double>& lp, const std::vector<double>& lr,
                            size_t first = 0, double rel = 2e-5) {
    for (size_t i = 0; i < lp.size(); ++i)
      EXPECT_NEAR(lp[i], lr[first + i], rel * lr[first + i]) << "step " << first + i + 1;
  }

  // Losses within 2e-5 relative; this rank's owned parameters within tol of the same global
  // elements of the reference. EXPECT, never ASSERT: a rank leaving a test early would leave the
  // others waiting.
  static void expect_like(Trainer& par, const std::vector<double>& lp, const Reference& ref,
                          float tol = 2e-4f, double loss_rel = 2e-5) {
    expect_losses(lp, ref.losses, 0, loss_rel);
    int64_t bad = 0;
    std::string first;
    for (int64_t s = 0; s < par.zero().num_units(); ++s) {
      const ParamUnit& unit = par.model().units()[par.zero().unit_id(s)];
      const ShardRange own = par.zero().owned(s);
      const float* p = par.zero().owned_params(s);
      for (const auto& t : unit.tensors()) {
        const std::vector<float>& r = ref.tensors.at(t.name);
        const int64_t b = std::max(own.begin, t.offset), e = std::min(own.end, t.offset + t.valid);
        for (int64_t i = b; i < e; ++i)
          if (!(std::abs(p[i - own.begin] - r[t.global_offset + i - t.offset]) <= tol) &&
              bad++ == 0)
            first = t.name + " element " + std::to_string(t.global_offset + i - t.offset);
      }
    }
    EXPECT_EQ(bad, 0) << "parameters differ from one process, first at " << first;
  }

  // A sub-communicator of the first `k` world ranks: a real smaller job inside this mpirun.
  std::unique_ptr<Comm> first_ranks(int k) const {
    return world_->split(world_->rank() < k ? 0 : 1, world_->rank(), "world");
  }

  std::unique_ptr<Comm> world_;
  std::string dir_;
};

}  // namespace strata::test
