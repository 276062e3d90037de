#include "launch/vocab_passes.h"

#include <cstring>
#include <vector>

#include "core/error.h"
#include "models/vocab_embedding.h"

namespace strata {

VocabPasses::VocabPasses(Model& model, Comm& group, int last_rank, TrainerHooks& hooks,
                         VocabTiles tiles)
    : model_(model), group_(group), last_rank_(last_rank), hooks_(hooks), tiles_(tiles) {
  const ModelConfig& c = model_.config();
  D_ = c.dim;
  V_ = c.vocab_size;
  row0_ = model_.vocab_split().row0(V_);
  rows_ = model_.vocab_split().rows(V_);
}

void VocabPasses::begin_step(int64_t tokens_per_micro_batch, float loss_scale,
                             const int32_t* tokens, const int32_t* targets) {
  N_ = tokens_per_micro_batch;
  loss_scale_ = loss_scale;
  tokens_ = tokens;
  targets_ = targets;
  loss_sum_ = 0;
}

VocabShard<float> VocabPasses::head_shard() const {
  return VocabShard<float>{model_.output_weight(), row0_, rows_, V_};
}

// ---- the embedding --------------------------------------------------------------------------

void VocabPasses::eval_embed(const int32_t* tokens, int64_t N, float* out) {
  hooks_.before(0, UnitPass::forward);
  const ParamUnit& e = model_.units()[0];
  FloatBuffer h(N * D_, MemCategory::activations);  // [N, D] this shard's rows, zeros elsewhere
  vocab_embedding_forward(e.params().data(), row0_, rows_, tokens, h.data(), N, D_);
  hooks_.after(0, UnitPass::forward);
  group_.all_reduce_sum(h.data(), N * D_);  // every token is owned by exactly one shard
  if (out) std::memcpy(out, h.data(), sizeof(float) * N * D_);
}

void VocabPasses::embed_forward(int mb, float* out) {
  eval_embed(tokens_ + static_cast<int64_t>(mb) * N_, N_, out);
}

void VocabPasses::embed_backward(int mb, const float* dx) {
  FloatBuffer g(N_ * D_, MemCategory::comm);  // [N, D] stage 0's input gradient
  if (group_.rank() == 0) std::memcpy(g.data(), dx, sizeof(float) * N_ * D_);
  group_.broadcast(g.data(), N_ * D_, 0);
  // Reduced at the step's end (ZeRO finish_grads): tied, T writes this unit too.
  hooks_.before(0, UnitPass::backward_weight);
  vocab_embedding_backward(tokens_ + static_cast<int64_t>(mb) * N_, g.data(),
                           model_.units()[0].grads().data(), row0_, rows_, N_, D_);
  hooks_.set_last(false);
  hooks_.after(0, UnitPass::backward_weight);
}

// ---- the head -------------------------------------------------------------------------------

double VocabPasses::head_statistics(const float* hn, const int32_t* targets, int64_t N, float scale,
                                    float* lse, float* dhn) {
  const int64_t out = model_.output_unit();
  hooks_.before(out, UnitPass::backward_input);  // the shard's rows (gathered under ZeRO-3)
  VocabHeadPartial<float> p(N, D_);
  vocab_head_local(head_shard(), hn, targets, N, D_, tiles_, p);
  hooks_.after(out, UnitPass::backward_input);
  std::vector<float> global_max(p.max(), p.max() + N);
  group_.all_reduce_max(global_max.data(), N);
  vocab_head_rescale(p, global_max.data());
  group_.all_reduce_sum(p.sums(), p.sums_size());  // s, target logit, G, W_target: one call
  std::vector<float> no_lse(lse ? 0 : static_cast<size_t>(N));
  return vocab_head_finish(p, targets, scale, lse ? lse : no_lse.data(), dhn);
}

void VocabPasses::vocab_forward(int mb, const float* hn, float* dhn) {
  Kept k;
  k.hn = FloatBuffer(N_ * D_, MemCategory::activations);  // [N, D] kept for T
  if (group_.rank() == last_rank_) std::memcpy(k.hn.data(), hn, sizeof(float) * N_ * D_);
  group_.broadcast(k.hn.data(), N_ * D_, last_rank_);
  k.lse = FloatBuffer(N_, MemCategory::activations);  // [N]
  const int32_t* targets = targets_ + static_cast<int64_t>(mb) * N_;
  FloatBuffer scratch(dhn ? 0 : N_ * D_, MemCategory::activations);
  loss_sum_ += head_statistics(k.hn.data(), targets, N_, loss_scale_, k.lse.data(),
                               dhn ? dhn : scratch.data());
  kept_[mb] = std::move(k);
}

void VocabPasses::vocab_weight(int mb) {
  auto it = kept_.find(mb);
  STRATA_CHECK(it != kept_.end(), "a vocabulary T pass without its S pass");
  const int64_t out = model_.output_unit();
  hooks_.set_last(false);  // reduced at the step's end: EMBED_B may write the tied unit later
  hooks_.before(out, UnitPass::backward);
  vocab_head_weight_grad(head_shard(), it->second.hn.data(),
                         targets_ + static_cast<int64_t>(mb) * N_, it->second.lse.data(), N_, D_,
                         loss_scale_, tiles_, model_.output_weight_grad());
  hooks_.after(out, UnitPass::backward);
  kept_.erase(it);
}

double VocabPasses::eval_loss(const float* hn, const int32_t* targets, int64_t N) {
  FloatBuffer h(N * D_, MemCategory::activations);  // [N, D]
  if (group_.rank() == last_rank_) std::memcpy(h.data(), hn, sizeof(float) * N * D_);
  group_.broadcast(h.data(), N * D_, last_rank_);
  return head_statistics(h.data(), targets, N, 1.f, nullptr, nullptr);
}

}  // namespace strata
