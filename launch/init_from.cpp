#include "launch/init_from.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "core/error.h"
#include "models/safetensors.h"

namespace strata {

namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

bool ignored(const std::string& name) {
  const std::string buffer = ".rotary_emb.inv_freq";
  return name.size() > buffer.size() &&
         name.compare(name.size() - buffer.size(), buffer.size(), buffer) == 0;
}

// Every model tensor by name, from every unit (a pipeline rank's Model keeps the names and
// shapes of the units it does not hold), so the check is the same on every rank.
std::map<std::string, const TensorSpec*> model_tensors(const Model& model) {
  std::map<std::string, const TensorSpec*> out;
  for (const auto& u : model.units())
    for (const auto& t : u.tensors()) out.emplace(t.name, &t);
  return out;
}

void check_names_and_shapes(const std::string& path, const SafetensorsFile& file,
                            const std::map<std::string, const TensorSpec*>& expected) {
  for (const auto& t : file.tensors) {
    if (ignored(t.name)) continue;
    const auto it = expected.find(t.name);
    if (it == expected.end())
      throw InputError(path + ": tensor '" + t.name +
                       "' is not a parameter of the model (compare model.n_layers, "
                       "model.layer_pattern and model.tie_embeddings with the model that wrote "
                       "it); refusing to load part of a file");
    if (t.shape != it->second->stored_shape())
      throw InputError(path + ": tensor '" + t.name + "' has shape " + shape_text(t.shape) + " (" +
                       t.dtype + ") but the model's is " + shape_text(it->second->stored_shape()) +
                       " (compare model.vocab_size, dim, n_heads, n_kv_heads, ffn_dim)");
  }
  for (const auto& [name, spec] : expected)
    if (!file.find(name))
      throw InputError(path + ": the model's tensor '" + name + "' " +
                       shape_text(spec->stored_shape()) + " is missing from the file");
}

// Elements [begin, end) of a unit's flat buffer into dst, from the file's global tensors (a row
// shard starts at its global offset; padding rows stay as they are).
void fill_range(const SafetensorsFile& file, const ParamUnit& unit, float* dst, int64_t begin,
                int64_t end) {
  for (const auto& t : unit.tensors()) {
    const int64_t b = std::max(begin, t.offset), e = std::min(end, t.offset + t.valid);
    if (b >= e) continue;
    const LoadedTensor* src = file.find(t.name);
    STRATA_CHECK(src != nullptr, "a checked tensor is missing");
    std::memcpy(dst + (b - begin), src->data.data() + t.global_offset + (b - t.offset),
                static_cast<size_t>(e - b) * sizeof(float));
  }
}

}  // namespace

int64_t init_from_safetensors(const std::string& path, Model& model, ZeroEngine& zero) {
  // Every rank reads the whole file (its pages are shared through the page cache) and keeps
  // what it holds; the fp32 copy lives only for this call.
  const SafetensorsFile file = load_safetensors(path);
  check_names_and_shapes(path, file, model_tensors(model));
  for (int64_t u = 0; u < zero.num_units(); ++u) {
    ParamUnit& unit = model.units()[static_cast<size_t>(zero.unit_id(u))];
    if (zero.stage() == 3) {  // stages 0-2 hold whole parameters, stage 3 only its shard
      const ShardRange own = zero.owned(u);
      fill_range(file, unit, zero.owned_params_mut(u), own.begin, own.end);
    } else {
      fill_range(file, unit, unit.params().data(), 0, unit.numel());
    }
  }
  return static_cast<int64_t>(file.tensors.size());
}

}  // namespace strata
