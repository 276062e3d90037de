#include "launch/train_checkpoint.h"

#include "core/error.h"

namespace strata {

void save_training_checkpoint(const std::string& root, int64_t step, const Model& model,
                              const std::vector<std::unique_ptr<Optimizer>>& optimizers,
                              const std::map<std::string, std::string>& state,
                              const std::string& config_yaml, int64_t keep_last) {
  std::vector<TensorSlice> slices;
  const auto& units = model.units();
  for (size_t u = 0; u < units.size(); ++u) {
    for (const auto& t : units[u].tensors())
      slices.push_back({t.name, t.shape, 0, t.numel, units[u].params().data() + t.offset});
    for (const auto& [state_name, buf] : optimizers[u]->state())
      for (const auto& t : units[u].tensors())
        slices.push_back({t.name + "." + state_name, t.shape, 0, t.numel, buf->data() + t.offset});
  }
  write_shard(root, step, /*rank=*/0, slices);
  commit_checkpoint(root, step, /*world=*/1, state, config_yaml, keep_last);
}

static void read_tensor(const CheckpointReader& ckpt, const TensorSpec& t, const std::string& name,
                        float* dst) {
  if (!ckpt.has(name))
    throw InputError(ckpt.dir() + ": checkpoint has no tensor '" + name + "'");
  if (ckpt.global_shape(name) != t.shape)
    throw InputError(ckpt.dir() + ": tensor '" + name +
                     "' has another shape than the model (was the model config changed?)");
  ckpt.read(name, 0, t.numel, dst);
}

void load_model_params(const CheckpointReader& ckpt, Model& model) {
  for (auto& unit : model.units())
    for (const auto& t : unit.tensors()) read_tensor(ckpt, t, t.name, unit.params().data() + t.offset);
}

void load_optimizer_state(const CheckpointReader& ckpt, const Model& model,
                          std::vector<std::unique_ptr<Optimizer>>& optimizers) {
  const int64_t steps = std::stoll(ckpt.state("optim.steps"));
  const auto& units = model.units();
  for (size_t u = 0; u < units.size(); ++u) {
    for (const auto& [state_name, buf] : optimizers[u]->state())
      for (const auto& t : units[u].tensors())
        read_tensor(ckpt, t, t.name + "." + state_name, buf->data() + t.offset);
    optimizers[u]->set_steps(steps);
  }
}

}  // namespace strata
