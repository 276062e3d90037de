#include "models/param_unit.h"

#include <algorithm>

#include "core/error.h"
#include "core/rng.h"
#include "core/weights_epoch.h"

namespace strata {

void ParamUnit::add(std::string tensor_name, std::vector<int64_t> shape, float init_std,
                    bool decay) {
  TensorSpec t;
  t.name = std::move(tensor_name);
  t.shape = std::move(shape);
  t.numel = 1;
  for (int64_t d : t.shape) t.numel *= d;
  t.offset = numel_;
  t.init_std = init_std;
  t.decay = decay;
  t.valid = t.numel;
  numel_ += t.numel;
  tensors_.push_back(std::move(t));
}

void ParamUnit::add_row_shard(std::string tensor_name, int64_t global_rows, int64_t cols,
                              int64_t row0, int64_t rows, float init_std, bool decay) {
  add(std::move(tensor_name), {rows, cols}, init_std, decay);
  TensorSpec& t = tensors_.back();
  t.global_shape = {global_rows, cols};
  t.global_offset = row0 * cols;
  t.valid = std::clamp<int64_t>(global_rows - row0, 0, rows) * cols;
}

void ParamUnit::allocate() {
  params_ = FloatBuffer(numel_, MemCategory::params);
  grads_ = FloatBuffer(numel_, MemCategory::grads);
}

static bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

const TensorSpec& ParamUnit::find(std::string_view suffix) const {
  for (const auto& t : tensors_)
    if (ends_with(t.name, suffix)) return t;
  throw StrataError("unit " + name_ + " has no tensor " + std::string(suffix));
}

bool ParamUnit::contains(std::string_view suffix) const {
  for (const auto& t : tensors_)
    if (ends_with(t.name, suffix)) return true;
  return false;
}

std::vector<DecaySegment> ParamUnit::decay_segments() const {
  std::vector<DecaySegment> segs;
  for (const auto& t : tensors_) segs.push_back({t.offset, t.numel, t.decay});
  return segs;
}

const bf16* ParamUnit::params_bf16() const {
  STRATA_CHECK(params_.size() >= numel_, "unit " + name_ + ": bf16 weights of unheld parameters");
  if (bf16_.size() == 0 || bf16_epoch_ != weights_epoch()) {
    if (bf16_.size() == 0) bf16_ = FloatBuffer((numel_ + 1) / 2, MemCategory::params);
    to_bf16(params_.data(), reinterpret_cast<bf16*>(bf16_.data()), numel_);
    bf16_epoch_ = weights_epoch();
  }
  return reinterpret_cast<const bf16*>(bf16_.data());
}

void ParamUnit::init(uint64_t seed) {
  bump_weights_epoch();
  for (const auto& t : tensors_) {
    float* p = params_.data() + t.offset;
    // A shard draws its own slice of the global tensor's numbers: every layout holds the same.
    if (t.init_std == 0.f) {
      for (int64_t i = 0; i < t.valid; ++i) p[i] = 1.f;
    } else {
      fill_normal(p, t.valid, seed, t.name, t.init_std, static_cast<uint64_t>(t.global_offset));
    }
    for (int64_t i = t.valid; i < t.numel; ++i) p[i] = 0.f;  // padding rows
  }
}

}  // namespace strata
