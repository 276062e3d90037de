#include "launch/train_checkpoint.h"

#include <algorithm>
#include <iterator>
#include <set>

#include "core/error.h"
#include "core/stop.h"

namespace strata {

std::vector<TensorSlice> unit_slices(const ParamUnit& unit, const float* data, int64_t begin,
                                     int64_t end, const std::string& suffix) {
  std::vector<TensorSlice> slices;
  for (const auto& t : unit.tensors()) {
    // Padding rows of a shard (past t.valid) are not part of the global tensor: never saved.
    const int64_t b = std::max(begin, t.offset), e = std::min(end, t.offset + t.valid);
    if (b >= e) continue;
    slices.push_back({t.name + suffix, t.stored_shape(), t.global_offset + (b - t.offset), e - b,
                      data + (b - begin)});
  }
  return slices;
}

namespace {
std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}
}  // namespace

void read_unit_range(const CheckpointReader& ckpt, const ParamUnit& unit, float* dst, int64_t begin,
                     int64_t end, const std::string& suffix) {
  for (const auto& t : unit.tensors()) {
    // Padding rows stay as they are (zero): the checkpoint holds only the real ones.
    const int64_t b = std::max(begin, t.offset), e = std::min(end, t.offset + t.valid);
    if (b >= e) continue;
    const std::string name = t.name + suffix;
    throw_if_stop_requested("loading checkpoint " + ckpt.dir());  // between tensors
    if (!ckpt.has(name))
      throw InputError(ckpt.dir() + ": checkpoint has no tensor '" + name +
                       "' (was the model config changed? model.n_layers, model.tie_embeddings "
                       "and the optimizer must match the run that wrote it)");
    if (ckpt.global_shape(name) != t.stored_shape())
      throw InputError(ckpt.dir() + ": tensor '" + name + "' is " +
                       shape_text(ckpt.global_shape(name)) + " in the checkpoint but " +
                       shape_text(t.stored_shape()) +
                       " in the model (was the model config changed?)");
    ckpt.read(name, t.global_offset + (b - t.offset), e - b, dst + (b - begin));
  }
}

void check_checkpoint_tensors(const CheckpointReader& ckpt, const std::vector<ParamUnit>& units) {
  std::set<std::string> model;
  for (const auto& u : units)
    for (const auto& t : u.tensors()) model.insert(t.name);
  std::vector<std::string> extra;
  for (const auto& name : ckpt.tensor_names()) {
    // "<tensor>" or "<tensor>.<optimizer state>": the longest model name not after it in order.
    auto it = model.upper_bound(name);
    const bool known =
        it != model.begin() && (*std::prev(it) == name || name.rfind(*std::prev(it) + ".", 0) == 0);
    if (!known) extra.push_back(name);
  }
  if (extra.empty()) return;
  throw InputError(ckpt.dir() + ": the checkpoint holds " + std::to_string(extra.size()) +
                   " tensor(s) the model does not have, e.g. '" + extra.front() +
                   "': it was written for another model (compare model.n_layers, "
                   "model.tie_embeddings with its config.yaml); refusing to load part of it");
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
  // The pipeline keys belong to the old layout: one stage runs the whole model.
  p.schedule = "1f1b";
  p.virtual_stages = 1;
  p.schedule_file.clear();
  p.pp_layers.clear();
  const int64_t per_step = cfg.train.micro_batch * p.dp;
  cfg.train.global_batch = (cfg.train.global_batch + per_step - 1) / per_step * per_step;
  return "the checkpoint's layout (" + before + ") does not fit " + std::to_string(world) +
         (world == 1 ? " process" : " processes") + ": reading it as " + layout();
}

}  // namespace strata
