#pragma once
// The training math behind the pipeline executor: this rank's model stages (one per stage it
// holds, from the pipeline plan), the step's micro-batches and the loss they add up to. The
// executor (parallel/pipeline_executor.h) decides what runs when; this decides nothing.
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "launch/pipeline_plan.h"
#include "launch/train_hooks.h"
#include "launch/vocab_passes.h"
#include "models/model_stage.h"
#include "parallel/pipeline_executor.h"
#include "parallel/zero.h"

namespace strata {

class TrainStageRunner final : public StageRunner {
 public:
  // `vocab`: the vocabulary passes when the embedding and head are split over the pipeline ranks
  // (stage 0 then starts at the first block; the last stage's head is the final norm).
  TrainStageRunner(Model& model, const PipelinePlan& plan, int pp_rank, ZeroEngine& zero,
                   TrainerHooks& hooks, ActivationStore& store, VocabPasses* vocab = nullptr);

  // tokens/targets: this rank's share of the step, micro-batch after micro-batch.
  void begin_step(const BlockShape& shape, float loss_scale, const int32_t* tokens,
                  const int32_t* targets);
  // The last stage's (with vocabulary passes: every rank's, the same), else 0.
  double loss_sum() const { return loss_sum_ + (vocab_ ? vocab_->loss_sum() : 0); }
  bool idle() const;  // no stage holds anything of a micro-batch

  int64_t message_elems(int stage) const override;
  void forward(int stage, int mb, const float* in, float* out, bool last) override;
  void backward(int stage, int mb, const float* dy, float* dx, bool last) override;
  void backward_input(int stage, int mb, const float* dy, float* dx) override;
  void backward_weight(int stage, int mb, bool last) override;
  void reduce_grads(int stage) override;
  void embed_forward(int mb) override;
  void embed_result(int mb, float* out) override;
  void vocab_forward(int mb, const float* hn) override;
  void vocab_result(int mb, float* dhn) override;
  void poll_vocab() override { vocab().poll(); }
  void finish_vocab() override { vocab().finish_step(); }
  void vocab_weight(int mb, bool last) override;
  void embed_backward(int mb, const float* dx, bool last) override;

  // Evaluation: one micro-batch through this rank's stages, the chain of stages in order, with
  // blocking messages over `pp` (stage s's output goes to stage s+1). Returns the loss sum on
  // the rank holding the last stage, else 0.
  double eval_micro_batch(Comm& pp, const BlockShape& shape, const int32_t* tokens,
                          const int32_t* targets);

 private:
  ModelStage& stage(int s);
  VocabPasses& vocab();
  MicroBatch micro_batch(int mb) const;

  const PipelinePlan& plan_;
  ZeroEngine& zero_;
  TrainerHooks& hooks_;
  std::map<int, std::unique_ptr<ModelStage>> stages_;
  StageContext ctx_;
  const int32_t* tokens_ = nullptr;
  const int32_t* targets_ = nullptr;
  int64_t dim_ = 0;
  double loss_sum_ = 0;
  VocabPasses* vocab_ = nullptr;
};

}  // namespace strata
