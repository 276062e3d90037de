#include "optim/optimizer.h"

#include <algorithm>
#include <string>

#include "core/error.h"
#include "optim/adamw.h"
#include "optim/sgd.h"

namespace strata {

Optimizer::~Optimizer() = default;

void Optimizer::write_bf16_copy(const float* params, int64_t n) {
  if (bf16_out_) to_bf16(params, bf16_out_, n);
  bf16_out_ = nullptr;
}

float* Optimizer::take_grads_to_clear(const float* grads) {
  float* g = clear_grads_;
  clear_grads_ = nullptr;
  STRATA_CHECK(!g || g == grads, "set_grads_to_clear names other gradients than step() reads");
  return g;
}

std::vector<DecaySegment> clip_segments(const std::vector<DecaySegment>& segments, int64_t begin,
                                        int64_t end) {
  std::vector<DecaySegment> out;
  for (const DecaySegment& s : segments) {
    const int64_t lo = std::max(s.offset, begin);
    const int64_t hi = std::min(s.offset + s.numel, end);
    if (lo < hi) out.push_back({lo - begin, hi - lo, s.decay});
  }
  return out;
}

void check_segments(const std::vector<DecaySegment>& segments, int64_t n) {
  int64_t next = 0;
  for (const DecaySegment& s : segments) {
    STRATA_CHECK(s.offset == next && s.numel >= 0,
                 "decay segments must tile the range in order; segment at " +
                     std::to_string(s.offset) + " expected at " + std::to_string(next));
    next += s.numel;
  }
  STRATA_CHECK(next == n, "decay segments cover " + std::to_string(next) + " of " +
                              std::to_string(n) + " elements");
}

std::unique_ptr<Optimizer> make_optimizer(const std::string& name, int64_t n,
                                          const OptimizerOptions& o) {
  if (name == "adamw")
    return std::make_unique<AdamW>(n, AdamWOptions{o.beta1, o.beta2, o.eps, o.weight_decay});
  if (name == "sgd") return std::make_unique<SGD>(n, SGDOptions{o.momentum, o.weight_decay});
  throw InputError("optim.name: unknown optimizer '" + name + "' (expected adamw or sgd)");
}

}  // namespace strata
