#include "models/config.h"

#include <cstdio>

#include "core/error.h"

namespace strata {

const char* feature_map_name(FeatureMap f) { return f == FeatureMap::silu ? "silu" : "identity"; }
const char* decay_name(Decay d) { return d == Decay::retnet ? "retnet" : "none"; }

void ModelConfig::validate() const {
  auto bad = [](const std::string& field, const std::string& why) {
    throw InputError("model." + field + ": " + why);
  };
  if (vocab_size < 2) bad("vocab_size", "expected >= 2");
  if (dim < 2) bad("dim", "expected >= 2");
  if (n_layers < 1) bad("n_layers", "expected >= 1");
  if (n_heads < 1) bad("n_heads", "expected >= 1");
  if (dim % n_heads != 0)
    bad("n_heads", "dim (" + std::to_string(dim) + ") must be divisible by n_heads (" +
                       std::to_string(n_heads) + ")");
  if (head_dim() % 2 != 0) bad("n_heads", "head dim dim/n_heads must be even for RoPE");
  if (n_kv_heads < 1 || n_heads % n_kv_heads != 0)
    bad("n_kv_heads", "expected a divisor of n_heads (" + std::to_string(n_heads) + ")");
  if (ffn_dim < 1) bad("ffn_dim", "expected >= 1");
  if (layer_pattern.empty()) bad("layer_pattern", "expected a non-empty string of 'L' and 'S'");
  for (char c : layer_pattern)
    if (c != 'L' && c != 'S')
      bad("layer_pattern", std::string("expected only 'L' and 'S', found '") + c + "'");
  if (!(norm_eps > 0.f)) bad("norm_eps", "expected > 0");
  if (!(rope_theta > 0.f)) bad("rope_theta", "expected > 0");
  if (chunk_size < 1) bad("linear_attention.chunk_size", "expected >= 1");
}

int64_t ModelConfig::num_parameters() const {
  const int64_t dh = head_dim();
  int64_t n = vocab_size * dim + dim;  // embedding + final norm
  if (!tie_embeddings) n += vocab_size * dim;
  for (int64_t i = 0; i < n_layers; ++i) {
    const int64_t kv = (mixer(i) == 'S' ? n_kv_heads : n_heads) * dh;
    n += 2 * dim;                                                 // two norms
    n += n_heads * dh * dim + 2 * kv * dim + dim * n_heads * dh;  // q k v o
    if (mixer(i) == 'L') n += dim;                                // out_norm
    n += 3 * ffn_dim * dim;                                       // SwiGLU
  }
  return n;
}

}  // namespace strata

namespace strata {

std::string model_config_json(const ModelConfig& c) {
  char eps[32], theta[32];
  std::snprintf(eps, sizeof eps, "%.9g", static_cast<double>(c.norm_eps));
  std::snprintf(theta, sizeof theta, "%.9g", static_cast<double>(c.rope_theta));
  return std::string("{\"vocab_size\":") + std::to_string(c.vocab_size) +
         ",\"dim\":" + std::to_string(c.dim) + ",\"n_layers\":" + std::to_string(c.n_layers) +
         ",\"n_heads\":" + std::to_string(c.n_heads) +
         ",\"n_kv_heads\":" + std::to_string(c.n_kv_heads) +
         ",\"ffn_dim\":" + std::to_string(c.ffn_dim) + ",\"layer_pattern\":\"" + c.layer_pattern +
         "\",\"norm_eps\":" + eps + ",\"rope_theta\":" + theta +
         ",\"linear_attention\":{\"feature_map\":\"" + feature_map_name(c.feature_map) +
         "\",\"decay\":\"" + decay_name(c.decay) +
         "\",\"chunk_size\":" + std::to_string(c.chunk_size) +
         "},\"tie_embeddings\":" + (c.tie_embeddings ? "true" : "false") + "}";
}

}  // namespace strata
