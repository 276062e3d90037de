#include "models/model.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "models/embedding.h"
#include "models/model_stage.h"
#include "models/rmsnorm.h"
#include "models/vocab_head.h"

namespace strata {

Model::Model(const ModelConfig& cfg, const std::vector<bool>& held, VocabSplit split)
    : cfg_(cfg), split_(split) {
  cfg_.validate();
  const int64_t V = cfg_.vocab_size, D = cfg_.dim, rows = split_.rows(V), row0 = split_.row0(V);
  units_.emplace_back("embed");
  if (split_.on)
    units_.back().add_row_shard("model.embed_tokens.weight", V, D, row0, rows, 0.02f, true);
  else
    units_.back().add("model.embed_tokens.weight", {V, D}, 0.02f, true);
  for (int64_t i = 0; i < cfg_.n_layers; ++i) {
    blocks_.emplace_back(cfg_, i);
    units_.emplace_back("layers." + std::to_string(i));
    blocks_.back().declare(units_.back());
  }
  units_.emplace_back("head");
  units_.back().add("model.norm.weight", {D}, 0.f, false);
  if (!cfg_.tie_embeddings && !split_.on) units_.back().add("lm_head.weight", {V, D}, 0.02f, true);
  if (!cfg_.tie_embeddings && split_.on) {
    units_.emplace_back("lm_head");
    units_.back().add_row_shard("lm_head.weight", V, D, row0, rows, 0.02f, true);
  }
  held_ = held.empty() ? std::vector<bool>(units_.size(), true) : held;
  STRATA_CHECK(held_.size() == units_.size(), "one held flag per unit expected");
  for (size_t u = 0; u < units_.size(); ++u)
    if (held_[u]) units_[u].allocate();
}

int64_t Model::num_parameters() const {
  int64_t n = 0;
  for (const auto& u : units_) n += u.numel();
  return n;
}

void Model::init(uint64_t seed) {
  for (size_t u = 0; u < units_.size(); ++u)
    if (held_[u]) units_[u].init(seed);
}

void Model::zero_grads() {
  for (size_t u = 0; u < units_.size(); ++u)
    if (held_[u]) units_[u].grads().zero();
}

int64_t Model::output_unit() const {
  if (cfg_.tie_embeddings) return 0;
  return split_.on ? head_unit() + 1 : head_unit();
}

const float* Model::output_weight() const {
  const ParamUnit& u = units_[static_cast<size_t>(output_unit())];
  const char* name = cfg_.tie_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  return u.params().data() + u.find(name).offset;
}

const bf16* Model::output_weight_bf16() const {
  if (cfg_.precision != Precision::bf16) return nullptr;
  const ParamUnit& u = units_[static_cast<size_t>(output_unit())];
  const char* name = cfg_.tie_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  return u.params_bf16() + u.find(name).offset;
}

float* Model::output_weight_grad() {
  ParamUnit& u = units_[static_cast<size_t>(output_unit())];
  const char* name = cfg_.tie_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  return u.grads().data() + u.find(name).offset;
}

// The head is the vocabulary-parallel op over a group of one (models/vocab_head.h): logits exist
// one tile at a time, so the loss's memory is bounded by the tile, not by tokens x vocabulary.
double Model::head_loss(const float* h, const int32_t* targets, int64_t N, float loss_scale,
                        float* dh) {
  const int64_t D = cfg_.dim, V = cfg_.vocab_size;
  ParamUnit& hu = units_[static_cast<size_t>(head_unit())];
  const float* g = hu.params().data() + hu.find("model.norm.weight").offset;
  float* dg = hu.grads().data() + hu.find("model.norm.weight").offset;
  FloatBuffer hn(N * D, MemCategory::activations);            // [N, D] RMSNorm(h; g_final)
  FloatBuffer inv(N, MemCategory::activations);               // [N]
  FloatBuffer dhn(dh ? N * D : 0, MemCategory::activations);  // [N, D]
  rmsnorm_forward(h, g, hn.data(), inv.data(), N, D, cfg_.norm_eps);
  const VocabShard<float> whole{output_weight(), 0, V, V, output_weight_bf16()};
  IdentityVocabReduce<float> one;
  const double loss =
      vocab_head_loss(whole, hn.data(), targets, N, D, loss_scale, VocabTiles{},
                      dh ? dhn.data() : nullptr, dh ? output_weight_grad() : nullptr, one);
  if (dh) rmsnorm_backward(h, g, inv.data(), dhn.data(), dh, dg, N, D);
  return loss;
}

double Model::forward_backward(const int32_t* tokens, const int32_t* targets, const BlockShape& s,
                               float loss_scale, ActivationStore& store, int64_t micro_batch,
                               BlockHooks* hooks) {
  ModelStage whole(*this, 0, static_cast<int64_t>(units_.size()));
  const StageContext c{s, loss_scale, &store, hooks};
  const MicroBatch mb{micro_batch, tokens, targets};
  const double loss = whole.forward(c, mb, nullptr, nullptr);
  whole.backward(c, mb, nullptr, nullptr);
  return loss;
}

double Model::forward_loss(const int32_t* tokens, const int32_t* targets, const BlockShape& s,
                           int64_t* counted, BlockHooks* hooks) {
  ModelStage whole(*this, 0, static_cast<int64_t>(units_.size()));
  const StageContext c{s, 1.f, nullptr, hooks};
  const double loss = whole.forward_eval(c, MicroBatch{0, tokens, targets}, nullptr, nullptr);
  const int64_t N = s.tokens();
  if (counted) *counted = std::count_if(targets, targets + N, [](int32_t t) { return t >= 0; });
  return loss;
}

}  // namespace strata
