#include "offload/saved_tensors.h"

#include <algorithm>

#include "core/error.h"

namespace strata {

float* SavedTensors::add(const std::string& name, int64_t n) {
  STRATA_CHECK(!has(name), "activation '" + name + "' saved twice");
  items_.emplace_back(name, FloatBuffer(n, MemCategory::activations));
  return items_.back().second.data();
}

const FloatBuffer* SavedTensors::find(const std::string& name) const {
  for (const auto& [n, b] : items_)
    if (n == name) return &b;
  return nullptr;
}

bool SavedTensors::has(const std::string& name) const { return find(name) != nullptr; }

const float* SavedTensors::get(const std::string& name) const {
  const FloatBuffer* b = find(name);
  STRATA_CHECK(b != nullptr, "activation '" + name + "' was not saved");
  return b->data();
}

float* SavedTensors::mutable_get(const std::string& name) { return const_cast<float*>(get(name)); }

int64_t SavedTensors::bytes() const {
  int64_t total = 0;
  for (const auto& item : items_) total += item.second.bytes();
  return total;
}

void SavedTensors::keep_only(const std::string& keep) {
  std::erase_if(items_, [&](const auto& item) { return item.first != keep; });
}

}  // namespace strata
