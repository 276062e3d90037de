#pragma once
// train.init_from: start training from the weights of a safetensors file (a `strata export`, or
// a Llama checkpoint in the Hugging Face layout for a pure-softmax model), looked up by the
// Llama names of docs/MODEL.md. Only parameters: the optimizer state starts fresh.
#include <string>

#include "models/model.h"
#include "parallel/zero.h"

namespace strata {

// Checks the file against the model (every tensor present, none extra, the model's full shape,
// F32/BF16/F16) and fills the parameters this process holds: with ZeRO-3 only its shard, with
// vocabulary parallelism only its rows. `*.rotary_emb.inv_freq` (a RoPE buffer some Llama
// exports carry) is ignored: RoPE is computed from model.rope_theta. InputError naming the file
// and the tensor. Returns the number of tensors in the file that were checked.
int64_t init_from_safetensors(const std::string& path, Model& model, ZeroEngine& zero);

}  // namespace strata
