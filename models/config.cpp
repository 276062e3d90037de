#include "models/config.h"

#include <climits>
#include <cstdio>

#include "core/error.h"

namespace strata {

const char* feature_map_name(FeatureMap f) { return f == FeatureMap::silu ? "silu" : "identity"; }
const char* decay_name(Decay d) { return d == Decay::retnet ? "retnet" : "none"; }

namespace {

// Upper bounds that keep every size product of the model (and of its activations) far from
// int64 overflow, while staying well above any model trained today.
constexpr int64_t kMaxVocab = INT32_MAX;  // tokens are int32 in memory
constexpr int64_t kMaxDim = int64_t{1} << 20;
constexpr int64_t kMaxLayers = int64_t{1} << 16;
constexpr int64_t kMaxFfn = int64_t{1} << 24;
constexpr int64_t kMaxChunk = int64_t{1} << 16;
// 2^48 parameters (about 281 trillion): a bound, not a goal.
constexpr double kMaxParameters = 281474976710656.0;

// The parameter count in double, which cannot overflow for any int64 fields.
double parameter_count(const ModelConfig& c) {
  const double V = static_cast<double>(c.vocab_size), D = static_cast<double>(c.dim);
  const double dh = static_cast<double>(c.head_dim()), H = static_cast<double>(c.n_heads);
  double n = V * D * (c.tie_embeddings ? 1 : 2) + D;
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const double kv = static_cast<double>(c.mixer(i) == 'S' ? c.n_kv_heads : c.n_heads) * dh;
    n += 2 * D + 2 * H * dh * D + 2 * kv * D + (c.mixer(i) == 'L' ? D : 0) +
         3 * static_cast<double>(c.ffn_dim) * D;
  }
  return n;
}

}  // namespace

void ModelConfig::validate() const {
  auto bad = [](const std::string& field, const std::string& why) {
    throw InputError("model." + field + ": " + why);
  };
  auto in_range = [&](const char* field, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
      bad(field, "expected a value in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                     "], got " + std::to_string(v));
  };
  in_range("vocab_size", vocab_size, 2, kMaxVocab);
  in_range("dim", dim, 2, kMaxDim);
  in_range("n_layers", n_layers, 1, kMaxLayers);
  in_range("n_heads", n_heads, 1, dim);
  if (dim % n_heads != 0)
    bad("n_heads", "dim (" + std::to_string(dim) + ") must be divisible by n_heads (" +
                       std::to_string(n_heads) + ")");
  if (head_dim() % 2 != 0) bad("n_heads", "head dim dim/n_heads must be even for RoPE");
  if (n_kv_heads < 1 || n_heads % n_kv_heads != 0)
    bad("n_kv_heads", "expected a divisor of n_heads (" + std::to_string(n_heads) + ")");
  in_range("ffn_dim", ffn_dim, 1, kMaxFfn);
  if (layer_pattern.empty()) bad("layer_pattern", "expected a non-empty string of 'L' and 'S'");
  for (char c : layer_pattern)
    if (c != 'L' && c != 'S')
      bad("layer_pattern", std::string("expected only 'L' and 'S', found '") + c + "'");
  if (!(norm_eps > 0.f)) bad("norm_eps", "expected > 0");
  if (!(rope_theta > 0.f)) bad("rope_theta", "expected > 0");
  in_range("linear_attention.chunk_size", chunk_size, 1, kMaxChunk);
  if (parameter_count(*this) > kMaxParameters) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3g", parameter_count(*this));
    bad("dim", std::string("the model would have ") + buf +
                   " parameters (vocab_size, dim, n_layers and ffn_dim together), more than "
                   "the supported 2^48");
  }
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
