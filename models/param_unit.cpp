#include "models/param_unit.h"

#include "core/error.h"
#include "core/rng.h"

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
  numel_ += t.numel;
  tensors_.push_back(std::move(t));
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

void ParamUnit::init(uint64_t seed) {
  for (const auto& t : tensors_) {
    float* p = params_.data() + t.offset;
    if (t.init_std == 0.f) {
      for (int64_t i = 0; i < t.numel; ++i) p[i] = 1.f;
    } else {
      fill_normal(p, t.numel, seed, t.name, t.init_std);
    }
  }
}

}  // namespace strata
