#pragma once
// The vocabulary passes of a training step (vocabulary parallelism, Yeung et al. 2024): every
// pipeline rank holds rows of the embedding and of the LM head (models/model.h VocabSplit) and
// takes part in four collectives per micro-batch over the vocabulary group (the pp ranks of one
// dp/sp position), placed in the schedule as actions (docs/PIPELINE.md):
//   EMBED_F  each rank embeds the tokens its rows own (zeros elsewhere); a SUM all-reduce gives
//            stage 0 its input.
//   S        the last stage's normed hidden states hn are broadcast; each rank's S pass over its
//            rows (models/vocab_head.h: logits one tile at a time, never [N x V]), a MAX then a
//            SUM all-reduce; every rank then knows the loss and dL/dhn, which goes back to the
//            last stage. hn and the log-sum-exp are kept for T.
//   T        the weight gradient of this rank's head rows (local).
//   EMBED_B  stage 0's input gradient is broadcast; each rank adds it to its embedding rows.
// With pp = 1 the group has one rank and the same passes are the plain head over the whole
// vocabulary, whose tiles bound the loss's memory.
#include <cstdint>
#include <map>

#include "core/memory.h"
#include "launch/train_hooks.h"
#include "models/model.h"
#include "models/vocab_head.h"
#include "parallel/comm.h"

namespace strata {

class VocabPasses {
 public:
  // `group`: the vocabulary group, rank i holding shard i; `last_rank` holds the last stage,
  // rank 0 stage 0.
  VocabPasses(Model& model, Comm& group, int last_rank, TrainerHooks& hooks, VocabTiles tiles);

  // What every pass of the step shares: tokens and targets of this rank's micro-batches.
  void begin_step(int64_t tokens_per_micro_batch, float loss_scale, const int32_t* tokens,
                  const int32_t* targets);
  double loss_sum() const { return loss_sum_; }  // this step's, on every rank alike
  bool idle() const { return kept_.empty(); }

  void embed_forward(int mb, float* out);  // out: [N, D] on stage 0's rank, else nullptr
  void vocab_forward(int mb, const float* hn, float* dhn);  // hn, dhn: on the last rank only
  void vocab_weight(int mb);
  void embed_backward(int mb, const float* dx);  // dx: on stage 0's rank only

  // Evaluation (no gradients, nothing kept): the embedding of one micro-batch, and the loss sum
  // of the last stage's output, both collective over the group.
  void eval_embed(const int32_t* tokens, int64_t N, float* out);
  double eval_loss(const float* hn, const int32_t* targets, int64_t N);

 private:
  struct Kept {
    FloatBuffer hn;   // [N, D]
    FloatBuffer lse;  // [N]
  };
  VocabShard<float> head_shard() const;
  // S on hn [N, D] (every rank's copy): loss sum; lse and dhn when given.
  double head_statistics(const float* hn, const int32_t* targets, int64_t N, float scale,
                         float* lse, float* dhn);

  Model& model_;
  Comm& group_;
  int last_rank_;
  TrainerHooks& hooks_;
  VocabTiles tiles_;
  int64_t N_ = 0, D_ = 0, V_ = 0, row0_ = 0, rows_ = 0;
  float loss_scale_ = 1;
  const int32_t* tokens_ = nullptr;
  const int32_t* targets_ = nullptr;
  double loss_sum_ = 0;
  std::map<int, Kept> kept_;
};

}  // namespace strata
