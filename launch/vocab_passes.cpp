#include "launch/vocab_passes.h"

#include <cstring>
#include <string>
#include <utility>

#include "core/clock.h"
#include "core/error.h"
#include "models/vocab_embedding.h"
#include "parallel/watchdog.h"

namespace strata {

VocabPasses::VocabPasses(Model& model, Comm& group, int last_rank, TrainerHooks& hooks,
                         VocabTiles tiles, bool overlap)
    : model_(model),
      group_(group),
      last_rank_(last_rank),
      hooks_(hooks),
      tiles_(tiles),
      overlap_(overlap) {
  const ModelConfig& c = model_.config();
  D_ = c.dim;
  V_ = c.vocab_size;
  row0_ = model_.vocab_split().row0(V_);
  rows_ = model_.vocab_split().rows(V_);
}

void VocabPasses::begin_step(int64_t tokens_per_micro_batch, float loss_scale,
                             const int32_t* tokens, const int32_t* targets) {
  STRATA_CHECK(idle(), "vocabulary passes: a step began with the last one's collectives open");
  N_ = tokens_per_micro_batch;
  loss_scale_ = loss_scale;
  tokens_ = tokens;
  targets_ = targets;
  loss_sum_ = wait_s_ = 0;
  losses_.clear();
}

VocabShard<float> VocabPasses::head_shard() const {
  return VocabShard<float>{model_.output_weight(), row0_, rows_, V_, model_.output_weight_bf16()};
}

void VocabPasses::wait(CommHandle& h, const char* pass, int mb) {
  if (h.done()) return;
  const auto t0 = Clock::now();
  try {
    h.wait();
  } catch (const CollectiveTimeout& e) {
    throw CollectiveTimeout(std::string("vocabulary ") + pass + " of micro-batch " +
                            std::to_string(mb) + " (" + group_.describe() + "): " + e.what());
  }
  wait_s_ += seconds_since(t0);
}

void VocabPasses::poll() {
  for (auto& [mb, h] : heads_) h.bcast.test(), h.reduce.test();
  for (auto& [mb, e] : embeds_) e.handle.test();
  for (auto& [mb, g] : grads_) g.handle.test();
}

// ---- the embedding --------------------------------------------------------------------------

FloatBuffer VocabPasses::embed_partial(const int32_t* tokens, int64_t N) {
  hooks_.before(0, UnitPass::forward);
  FloatBuffer h(N * D_, MemCategory::comm);  // [N, D] this shard's rows, zeros elsewhere
  vocab_embedding_forward(model_.units()[0].params().data(), row0_, rows_, tokens, h.data(), N, D_);
  hooks_.after(0, UnitPass::forward);
  return h;
}

void VocabPasses::eval_embed(const int32_t* tokens, int64_t N, float* out) {
  FloatBuffer h = embed_partial(tokens, N);
  group_.all_reduce_sum(h.data(), N * D_);  // every token is owned by exactly one shard
  if (out) std::memcpy(out, h.data(), sizeof(float) * N * D_);
}

void VocabPasses::embed_forward(int mb) {
  InFlight e;
  e.buf = embed_partial(tokens_of(mb), N_);
  e.handle = group_.iall_reduce_sum(e.buf.data(), N_ * D_);
  if (!overlap_) wait(e.handle, "EMBED_F", mb);
  embeds_.emplace(mb, std::move(e));
}

void VocabPasses::embed_result(int mb, float* out) {
  auto it = embeds_.find(mb);
  STRATA_CHECK(it != embeds_.end(), "vocabulary passes: stage 0's input without its EMBED_F");
  wait(it->second.handle, "EMBED_F", mb);
  std::memcpy(out, it->second.buf.data(), sizeof(float) * N_ * D_);
  embeds_.erase(it);
}

void VocabPasses::add_embedding_grad(int mb, const float* g) {
  // Reduced at the step's end (ZeRO finish_grads): tied, T writes this unit too.
  hooks_.before(0, UnitPass::backward_weight);
  vocab_embedding_backward(tokens_of(mb), g, model_.units()[0].grads().data(), row0_, rows_, N_,
                           D_);
  hooks_.set_last(false);
  hooks_.after(0, UnitPass::backward_weight);
}

void VocabPasses::embed_backward(int mb, const float* dx) {
  InFlight g;
  g.buf = FloatBuffer(N_ * D_, MemCategory::comm);  // [N, D] stage 0's input gradient
  const bool root = group_.rank() == 0;
  if (root) std::memcpy(g.buf.data(), dx, sizeof(float) * N_ * D_);
  g.handle = group_.ibroadcast(g.buf.data(), N_ * D_, 0);
  if (!overlap_) wait(g.handle, "EMBED_B", mb);
  // The root has the data now: its rows' gradient at once (MPI lets a broadcast's root read its
  // buffer while the broadcast is in flight); the others' at the step's end.
  if (root) add_embedding_grad(mb, dx);
  grads_.emplace(mb, std::move(g));
}

// ---- the head -------------------------------------------------------------------------------

std::unique_ptr<VocabHeadPartial<float>> VocabPasses::head_partial(const float* hn,
                                                                   const int32_t* targets,
                                                                   int64_t N) {
  const int64_t out = model_.output_unit();
  hooks_.before(out, UnitPass::backward_input);  // the shard's rows (gathered under ZeRO-3)
  auto p = std::make_unique<VocabHeadPartial<float>>(N, D_);
  vocab_head_local(head_shard(), hn, targets, N, D_, tiles_, *p);
  hooks_.after(out, UnitPass::backward_input);
  return p;
}

double VocabPasses::eval_loss(const float* hn, const int32_t* targets, int64_t N) {
  FloatBuffer h(N * D_, MemCategory::activations);  // [N, D]
  if (group_.rank() == last_rank_) std::memcpy(h.data(), hn, sizeof(float) * N * D_);
  group_.broadcast(h.data(), N * D_, last_rank_);
  auto p = head_partial(h.data(), targets, N);
  group_.iall_reduce_scaled_rows(p->data(), N, p->row_len(), p->scaled()).wait();
  std::vector<float> lse(static_cast<size_t>(N));
  return vocab_head_finish(*p, targets, 1.f, lse.data(), static_cast<float*>(nullptr));
}

void VocabPasses::vocab_forward(int mb, const float* hn) {
  STRATA_CHECK(!heads_.count(mb), "vocabulary passes: a second S pass of one micro-batch");
  Head& h = heads_[mb];
  h.hn = FloatBuffer(N_ * D_, MemCategory::activations);  // [N, D] kept for T
  const bool root = group_.rank() == last_rank_;
  if (root) std::memcpy(h.hn.data(), hn, sizeof(float) * N_ * D_);
  h.bcast = group_.ibroadcast(h.hn.data(), N_ * D_, last_rank_);
  if (!root || !overlap_) wait(h.bcast, "S (hidden states)", mb);  // the S pass reads them
  h.partial = head_partial(h.hn.data(), targets_of(mb), N_);
  h.reduce = group_.iall_reduce_scaled_rows(h.partial->data(), N_, h.partial->row_len(),
                                            h.partial->scaled());
  if (!overlap_) wait(h.reduce, "S", mb);
}

VocabPasses::Head& VocabPasses::finished_head(int mb) {
  auto it = heads_.find(mb);
  STRATA_CHECK(it != heads_.end(), "vocabulary passes: T or dL/dhn without the S pass");
  Head& h = it->second;
  if (h.lse.size() == 0) {
    wait(h.bcast, "S (hidden states)", mb);
    wait(h.reduce, "S", mb);
    h.lse = FloatBuffer(N_, MemCategory::activations);  // [N] kept for T
    losses_[mb] = vocab_head_finish(*h.partial, targets_of(mb), loss_scale_, h.lse.data(),
                                    static_cast<float*>(nullptr));
    if (group_.rank() != last_rank_) h.partial.reset();  // the last rank still forms dhn from it
  }
  return h;
}

void VocabPasses::vocab_result(int mb, float* dhn) {
  Head& h = finished_head(mb);
  STRATA_CHECK(h.partial, "vocabulary passes: dL/dhn taken twice");
  // The same finish again, now with dhn: lse comes out bit for bit as before.
  vocab_head_finish(*h.partial, targets_of(mb), loss_scale_, h.lse.data(), dhn);
  h.partial.reset();
  if (h.hn.size() == 0) heads_.erase(mb);  // T done already
}

void VocabPasses::vocab_weight(int mb) {
  Head& h = finished_head(mb);
  const int64_t out = model_.output_unit();
  hooks_.set_last(false);  // reduced at the step's end: EMBED_B may write the tied unit later
  hooks_.before(out, UnitPass::backward);
  vocab_head_weight_grad(head_shard(), h.hn.data(), targets_of(mb), h.lse.data(), N_, D_,
                         loss_scale_, tiles_, model_.output_weight_grad());
  hooks_.after(out, UnitPass::backward);
  h.hn = FloatBuffer();
  if (!h.partial) heads_.erase(mb);  // dL/dhn taken already, or not this rank's
}

void VocabPasses::finish_step() {
  STRATA_CHECK(heads_.empty(), "vocabulary passes: the step ended with an S pass unfinished");
  for (auto& [mb, e] : embeds_) wait(e.handle, "EMBED_F", mb);  // others' input, not ours
  embeds_.clear();
  const bool root = group_.rank() == 0;
  for (auto& [mb, g] : grads_) {  // in micro-batch order: the same sums on every run
    wait(g.handle, "EMBED_B", mb);
    if (!root) add_embedding_grad(mb, g.buf.data());
  }
  grads_.clear();
  loss_sum_ = 0;
  for (const auto& [mb, loss] : losses_) loss_sum_ += loss;  // fixed order: deterministic
}

}  // namespace strata
