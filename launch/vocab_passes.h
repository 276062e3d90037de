#pragma once
// The vocabulary passes of a training step (vocabulary parallelism, Yeung et al. 2024): every
// pipeline rank holds rows of the embedding and of the LM head (models/model.h VocabSplit) and
// takes part in the collectives of every micro-batch over the vocabulary group (the pp ranks of
// one dp/sp position), placed in the schedule as actions (docs/PIPELINE.md):
//   EMBED_F  each rank embeds the tokens its rows own (zeros elsewhere); a SUM all-reduce gives
//            stage 0 its input.
//   S        the last stage's normed hidden states hn are broadcast; each rank's S pass over its
//            rows (models/vocab_head.h: logits one tile at a time, never [N x V]), then one
//            log-domain all-reduce of the statistics; every rank then knows the loss and dL/dhn,
//            which goes back to the last stage. hn and the log-sum-exp are kept for T.
//   T        the weight gradient of this rank's head rows (local).
//   EMBED_B  stage 0's input gradient is broadcast; each rank adds it to its embedding rows.
//
// The collectives overlap compute: each is posted at its action and completed where its result
// is first needed (stage 0's F for EMBED_F, the last stage's B or I and every rank's T for S, the
// step's end for EMBED_B and for what other ranks only take part in), so a rank goes on with
// other micro-batches' transformer work while the group's slower ranks catch up. Only the data
// a pass consumes is waited for: a non-last rank's S waits for hn's broadcast. Work that may
// reach the trainer's hooks (ZeRO gathers over dp) happens only at actions or at the step's end,
// never when a poll happens to find a request done, so every dp replica issues its dp
// collectives in the same order; the loss is summed in micro-batch order for the same reason
// (bit-identical runs).
//
// With pp = 1 the group has one rank and the same passes are the plain head over the whole
// vocabulary, whose tiles bound the loss's memory.
#include <cstdint>
#include <map>
#include <memory>

#include "core/memory.h"
#include "launch/train_hooks.h"
#include "models/model.h"
#include "models/vocab_head.h"
#include "parallel/comm.h"

namespace strata {

class VocabPasses {
 public:
  // `group`: the vocabulary group, rank i holding shard i; `last_rank` holds the last stage,
  // rank 0 stage 0. `overlap` false: every collective is waited for where it is posted (the
  // blocking form, kept for side-by-side measurements).
  VocabPasses(Model& model, Comm& group, int last_rank, TrainerHooks& hooks, VocabTiles tiles,
              bool overlap = true);

  // What every pass of the step shares: tokens and targets of this rank's micro-batches.
  void begin_step(int64_t tokens_per_micro_batch, float loss_scale, const int32_t* tokens,
                  const int32_t* targets);
  double loss_sum() const { return loss_sum_; }  // after finish_step, on every rank alike
  bool idle() const { return heads_.empty() && embeds_.empty() && grads_.empty(); }

  // EMBED_F: this rank's rows' embedding of mb, their sum started.
  void embed_forward(int mb);
  // Stage 0's input [N, D] of mb (EMBED_F's sum, waited for): on stage 0's rank only.
  void embed_result(int mb, float* out);
  // S: hn [N, D] on the last rank (nullptr elsewhere); the statistics' all-reduce started.
  void vocab_forward(int mb, const float* hn);
  // dL/dhn [N, D] of mb (S's all-reduce waited for): on the last rank only.
  void vocab_result(int mb, float* dhn);
  void vocab_weight(int mb);                     // T (waits for S's all-reduce first)
  void embed_backward(int mb, const float* dx);  // EMBED_B; dx: on stage 0's rank only
  // Between actions: tests what is in flight, so MPI moves it (nothing else happens here).
  void poll();
  // The step's end: completes every collective, applies the embedding gradients still waiting
  // and sums the loss. Before the trainer reduces gradients.
  void finish_step();

  // Evaluation (no gradients, nothing kept, blocking): the embedding of one micro-batch, and
  // the loss sum of the last stage's output, both collective over the group.
  void eval_embed(const int32_t* tokens, int64_t N, float* out);
  double eval_loss(const float* hn, const int32_t* targets, int64_t N);

  // Seconds this step spent waiting for the vocabulary collectives (not computing).
  double wait_seconds() const { return wait_s_; }

 private:
  struct Head {                                        // one micro-batch from S to T
    FloatBuffer hn;                                    // [N, D]: broadcast, kept for T
    FloatBuffer lse;                                   // [N], once finished
    std::unique_ptr<VocabHeadPartial<float>> partial;  // until finished
    CommHandle bcast, reduce;
    double loss = 0;
  };
  struct InFlight {   // EMBED_F's partial sum, or EMBED_B's broadcast gradient
    FloatBuffer buf;  // [N, D]
    CommHandle handle;
  };
  VocabShard<float> head_shard() const;
  const int32_t* targets_of(int mb) const { return targets_ + static_cast<int64_t>(mb) * N_; }
  const int32_t* tokens_of(int mb) const { return tokens_ + static_cast<int64_t>(mb) * N_; }
  // This shard's statistics of hn [N, D] into a fresh partial (hooks around: ZeRO-3 gathers).
  std::unique_ptr<VocabHeadPartial<float>> head_partial(const float* hn, const int32_t* targets,
                                                        int64_t N);
  FloatBuffer embed_partial(const int32_t* tokens, int64_t N);  // [N, D] (hooks around)
  Head& finished_head(int mb);  // waits for S(mb)'s collectives, finishes once
  void add_embedding_grad(int mb, const float* g);
  void wait(CommHandle& h, const char* pass, int mb);

  Model& model_;
  Comm& group_;
  int last_rank_;
  TrainerHooks& hooks_;
  VocabTiles tiles_;
  bool overlap_;
  int64_t N_ = 0, D_ = 0, V_ = 0, row0_ = 0, rows_ = 0;
  float loss_scale_ = 1;
  const int32_t* tokens_ = nullptr;
  const int32_t* targets_ = nullptr;
  double loss_sum_ = 0, wait_s_ = 0;
  std::map<int, double> losses_;  // per micro-batch, summed in order at finish_step
  std::map<int, Head> heads_;
  std::map<int, InFlight> embeds_;  // EMBED_F posted, not yet taken by stage 0 or completed
  std::map<int, InFlight> grads_;   // EMBED_B posted on a rank that applies it at the end
};

}  // namespace strata
