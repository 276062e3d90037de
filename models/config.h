#pragma once
// The model configuration of shared/MODEL.md (hybrid Linear-Llama).
#include <cstdint>
#include <string>

#include "core/precision.h"

namespace strata {

enum class FeatureMap { silu, identity };
enum class Decay { retnet, none };

struct ModelConfig {
  int64_t vocab_size = 256;
  int64_t dim = 64;
  int64_t n_layers = 2;
  int64_t n_heads = 4;
  int64_t n_kv_heads = 4;  // softmax (S) layers only; H % Hkv == 0
  int64_t ffn_dim = 172;
  std::string layer_pattern = "LLLS";  // repeated cyclically over the blocks
  float norm_eps = 1e-5f;
  float rope_theta = 10000.f;
  FeatureMap feature_map = FeatureMap::silu;
  Decay decay = Decay::retnet;
  int64_t chunk_size = 64;  // linear-attention chunk (tile) length; a compute choice, not math
  bool tie_embeddings = false;
  // The GEMMs' precision (core/precision.h), a compute choice too: set from train.precision, not
  // a model.* key, and not part of what a checkpoint's weights mean.
  Precision precision = Precision::fp32;

  int64_t head_dim() const { return dim / n_heads; }
  // 'L' or 'S' for block i.
  char mixer(int64_t i) const {
    return layer_pattern[static_cast<size_t>(i) % layer_pattern.size()];
  }
  // Throws InputError naming the offending field ("model.n_heads: ...") when inconsistent.
  void validate() const;
  int64_t num_parameters() const;
};

const char* feature_map_name(FeatureMap f);
const char* decay_name(Decay d);

}  // namespace strata

namespace strata {
// The configuration as a JSON object (safetensors metadata `strata_config`).
std::string model_config_json(const ModelConfig& c);
}  // namespace strata
