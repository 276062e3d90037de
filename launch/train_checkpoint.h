#pragma once
// What a training checkpoint holds, in terms of the model: every parameter tensor under its
// export name and every optimizer state as "<tensor name>.<state>" (e.g. ".exp_avg"), so a
// checkpoint is independent of how units are laid out or sharded.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "launch/checkpoint.h"
#include "models/model.h"
#include "optim/optimizer.h"

namespace strata {

// Single-rank save: writes the shard, then commits (manifest last, `latest` moved atomically).
void save_training_checkpoint(const std::string& root, int64_t step, const Model& model,
                              const std::vector<std::unique_ptr<Optimizer>>& optimizers,
                              const std::map<std::string, std::string>& state,
                              const std::string& config_yaml, int64_t keep_last);

// Loads parameters into `model`; InputError if a tensor is missing or has another shape.
void load_model_params(const CheckpointReader& ckpt, Model& model);
// Loads optimizer states (and step counts from state "optim.steps").
void load_optimizer_state(const CheckpointReader& ckpt, const Model& model,
                          std::vector<std::unique_ptr<Optimizer>>& optimizers);

}  // namespace strata
