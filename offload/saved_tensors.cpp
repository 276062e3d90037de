#include "offload/saved_tensors.h"

#include <algorithm>
#include <unordered_set>

#include "core/error.h"

namespace strata {

void SavedTensors::insert(const std::string& name, SharedBuffer buf) {
  STRATA_CHECK(!has(name), "activation '" + name + "' saved twice");
  STRATA_CHECK(buf != nullptr, "activation '" + name + "' saved without a buffer");
  items_.emplace_back(name, std::move(buf));
}

float* SavedTensors::add(const std::string& name, int64_t n) {
  insert(name, std::make_shared<FloatBuffer>(n, MemCategory::activations, FloatBuffer::kPageAlign));
  return items_.back().second->data();
}

float* SavedTensors::add_uninitialised(const std::string& name, int64_t n) {
  insert(name, std::make_shared<FloatBuffer>(FloatBuffer::uninitialised(n, MemCategory::activations,
                                                                        FloatBuffer::kPageAlign)));
  return items_.back().second->data();
}

void SavedTensors::share(const std::string& name, SharedBuffer buf) {
  insert(name, std::move(buf));
}

const SavedTensors::Item* SavedTensors::find(const std::string& name) const {
  for (const Item& item : items_)
    if (item.first == name) return &item;
  return nullptr;
}

const SavedTensors::Item& SavedTensors::at(const std::string& name) const {
  const Item* item = find(name);
  STRATA_CHECK(item != nullptr, "activation '" + name + "' was not saved");
  return *item;
}

bool SavedTensors::has(const std::string& name) const { return find(name) != nullptr; }

SharedBuffer SavedTensors::buffer(const std::string& name) const { return at(name).second; }

const float* SavedTensors::get(const std::string& name) const { return at(name).second->data(); }

float* SavedTensors::mutable_get(const std::string& name) {
  const SharedBuffer& buf = at(name).second;
  STRATA_CHECK(buf.use_count() == 1,
               "activation '" + name + "' is shared with another set and cannot be overwritten");
  return buf->data();
}

void SavedTensors::drop(const std::string& name) {
  at(name);  // a tensor never saved is a bug in the backward's bookkeeping
  std::erase_if(items_, [&](const Item& item) { return item.first == name; });
}

int64_t SavedTensors::bytes() const {
  std::unordered_set<const FloatBuffer*> seen;
  int64_t total = 0;
  for (const auto& [name, buf] : items_)
    if (seen.insert(buf.get()).second) total += buf->capacity_bytes();
  return total;
}

void SavedTensors::keep_only(const std::string& keep) {
  std::erase_if(items_, [&](const Item& item) { return item.first != keep; });
}

}  // namespace strata
