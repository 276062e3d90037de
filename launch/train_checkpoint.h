#pragma once
// What a training checkpoint holds, in terms of the model: every parameter tensor under its
// export name and every optimizer state as "<tensor name>.<state>" (e.g. ".exp_avg"). Each rank
// writes the elements it owns, as slices at their global offsets, so a checkpoint is independent
// of how units are laid out or sharded and loads under another data-parallel size or ZeRO stage.
#include <cstdint>
#include <string>
#include <vector>

#include "launch/checkpoint.h"
#include "launch/job_config.h"
#include "models/param_unit.h"

namespace strata {

// Elements [begin, end) of a unit's flat layout as per-tensor slices; data points at element
// `begin`. Tensor names get `suffix` appended (e.g. ".exp_avg").
std::vector<TensorSlice> unit_slices(const ParamUnit& unit, const float* data, int64_t begin,
                                     int64_t end, const std::string& suffix = "");

// Reads elements [begin, end) of a unit's flat layout from the checkpoint into dst (element
// `begin` at dst[0]). InputError if a tensor is missing or has another shape.
void read_unit_range(const CheckpointReader& ckpt, const ParamUnit& unit, float* dst, int64_t begin,
                     int64_t end, const std::string& suffix = "");

// InputError when the checkpoint holds a tensor (or an optimizer state of one) the model has
// not: a checkpoint of a deeper model, or an untied one read as tied, would otherwise load in
// part without a word.
void check_checkpoint_tensors(const CheckpointReader& ckpt, const std::vector<ParamUnit>& units);

// A layout for reading a checkpoint in `world` processes (eval): a checkpoint stores every tensor
// under its global name and offset, so any layout reads it. The job's own layout stays when
// pp * dp * sp == world; otherwise dp = world, sp = pp = 1 with the job's ZeRO stage (ZeRO pads
// each flat buffer to a multiple of dp, so every stage fits any dp), and train.global_batch is
// rounded up to a multiple of micro_batch * dp (eval does not use it; the trainer's layout does).
// Returns what changed, for the log; empty when nothing did.
std::string fit_layout_to_world(JobConfig& cfg, int64_t world);

}  // namespace strata
