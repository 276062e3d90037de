#include "models/model.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/gemm.h"
#include "models/cross_entropy.h"
#include "models/embedding.h"
#include "models/model_stage.h"
#include "models/rmsnorm.h"

namespace strata {

namespace {
// Rows of logits materialised at once by the head: bounds that buffer to kHeadRows * V floats.
constexpr int64_t kHeadRows = 1024;
}  // namespace

Model::Model(const ModelConfig& cfg, const std::vector<bool>& held) : cfg_(cfg) {
  cfg_.validate();
  const int64_t V = cfg_.vocab_size, D = cfg_.dim;
  units_.emplace_back("embed");
  units_.back().add("model.embed_tokens.weight", {V, D}, 0.02f, true);
  for (int64_t i = 0; i < cfg_.n_layers; ++i) {
    blocks_.emplace_back(cfg_, i);
    units_.emplace_back("layers." + std::to_string(i));
    blocks_.back().declare(units_.back());
  }
  units_.emplace_back("head");
  units_.back().add("model.norm.weight", {D}, 0.f, false);
  if (!cfg_.tie_embeddings) units_.back().add("lm_head.weight", {V, D}, 0.02f, true);
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

const float* Model::output_weight() const {
  return cfg_.tie_embeddings
             ? units_.front().params().data()
             : units_.back().params().data() + units_.back().find("lm_head.weight").offset;
}

float* Model::output_weight_grad() {
  return cfg_.tie_embeddings
             ? units_.front().grads().data()
             : units_.back().grads().data() + units_.back().find("lm_head.weight").offset;
}

double Model::head_loss(const float* h, const int32_t* targets, int64_t N, float loss_scale,
                        float* dh) {
  const int64_t D = cfg_.dim, V = cfg_.vocab_size;
  ParamUnit& hu = units_.back();
  const float* g = hu.params().data() + hu.find("model.norm.weight").offset;
  float* dg = hu.grads().data() + hu.find("model.norm.weight").offset;
  const float* Wout = output_weight();
  const int64_t rows = std::min(N, kHeadRows);
  FloatBuffer hn(rows * D, MemCategory::activations);            // [rows, D] RMSNorm(h; g_final)
  FloatBuffer inv(rows, MemCategory::activations);               // [rows]
  FloatBuffer logits(rows * V, MemCategory::activations);        // [rows, V], then dlogits in place
  FloatBuffer dhn(dh ? rows * D : 0, MemCategory::activations);  // [rows, D]
  double loss = 0;
  for (int64_t r0 = 0; r0 < N; r0 += rows) {
    const int64_t n = std::min(rows, N - r0);
    rmsnorm_forward(h + r0 * D, g, hn.data(), inv.data(), n, D, cfg_.norm_eps);
    linear_forward(hn.data(), Wout, logits.data(), n, V, D);
    loss += cross_entropy_forward_backward(logits.data(), targets + r0,
                                           dh ? logits.data() : nullptr, n, V, loss_scale);
    if (!dh) continue;
    linear_backward_input(logits.data(), Wout, dhn.data(), n, V, D);
    linear_backward_weight(logits.data(), hn.data(), output_weight_grad(), n, V, D);
    rmsnorm_backward(h + r0 * D, g, inv.data(), dhn.data(), dh + r0 * D, dg, n, D);
  }
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
