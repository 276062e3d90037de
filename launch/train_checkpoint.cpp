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

std::string fit_layout_to_world(JobConfig& cfg, int64_t world) {
  ParallelConfig& p = cfg.parallel;
  if (p.pp * p.dp * p.sp == world) return "";
  auto layout = [&] {
    return "dp=" + std::to_string(p.dp) + " sp=" + std::to_string(p.sp) +
           " pp=" + std::to_string(p.pp) + " zero_stage=" + std::to_string(p.zero_stage);
  };
  const std::string before = layout();
  p.dp = world;
  p.sp = 1;
  p.pp = 1;
  const int64_t per_step = cfg.train.micro_batch * p.dp;
  cfg.train.global_batch = (cfg.train.global_batch + per_step - 1) / per_step * per_step;
  return "the checkpoint's layout (" + before + ") does not fit " + std::to_string(world) +
         (world == 1 ? " process" : " processes") + ": reading it as " + layout();
}

}  // namespace strata
