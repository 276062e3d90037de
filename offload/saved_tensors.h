#pragma once
// The activations one block saves in its forward for its backward: a small named set of
// fp32 buffers, each charged to MemCategory::activations.
#include <string>
#include <utility>
#include <vector>

#include "core/memory.h"

namespace strata {

class SavedTensors {
 public:
  // Allocates a zeroed buffer of n floats under `name` and returns it.
  float* add(const std::string& name, int64_t n);
  const float* get(const std::string& name) const;
  float* mutable_get(const std::string& name);
  bool has(const std::string& name) const;
  int64_t bytes() const;
  // Drops every buffer except `keep` (the block input, from which the rest is recomputed).
  void keep_only(const std::string& keep);
  void clear() { items_.clear(); }
  // Hands every (name, buffer) over in the order they were added, leaving the set empty (the
  // swap policy copies each out and frees it, one at a time).
  std::vector<std::pair<std::string, FloatBuffer>> release() { return std::move(items_); }
  bool empty() const { return items_.empty(); }

 private:
  const FloatBuffer* find(const std::string& name) const;
  std::vector<std::pair<std::string, FloatBuffer>> items_;
};

}  // namespace strata
