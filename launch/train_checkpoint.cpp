#include "launch/train_checkpoint.h"

#include <algorithm>

#include "core/error.h"
#include "core/stop.h"

namespace strata {

std::vector<TensorSlice> unit_slices(const ParamUnit& unit, const float* data, int64_t begin,
                                     int64_t end, const std::string& suffix) {
  std::vector<TensorSlice> slices;
  for (const auto& t : unit.tensors()) {
    const int64_t b = std::max(begin, t.offset), e = std::min(end, t.offset + t.numel);
    if (b >= e) continue;
    slices.push_back({t.name + suffix, t.shape, b - t.offset, e - b, data + (b - begin)});
  }
  return slices;
}

void read_unit_range(const CheckpointReader& ckpt, const ParamUnit& unit, float* dst, int64_t begin,
                     int64_t end, const std::string& suffix) {
  for (const auto& t : unit.tensors()) {
    const int64_t b = std::max(begin, t.offset), e = std::min(end, t.offset + t.numel);
    if (b >= e) continue;
    const std::string name = t.name + suffix;
    throw_if_stop_requested("loading checkpoint " + ckpt.dir());  // between tensors
    if (!ckpt.has(name)) throw InputError(ckpt.dir() + ": checkpoint has no tensor '" + name + "'");
    if (ckpt.global_shape(name) != t.shape)
      throw InputError(ckpt.dir() + ": tensor '" + name +
                       "' has another shape than the model (was the model config changed?)");
    ckpt.read(name, b - t.offset, e - b, dst + (b - begin));
  }
}

}  // namespace strata
