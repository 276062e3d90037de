#pragma once
// The activations one block saves in its forward for its backward: a small named set of fp32
// buffers, each charged to MemCategory::activations.
//
// Buffers are page-aligned and padded to whole pages (FloatBuffer::kPageAlign) so a swap tier
// can write them to an O_DIRECT file as they are and read them back into a fresh one, with no
// staging copy. They are held through shared pointers: a tensor that several layers save (the
// same buffer shared into several sets) is one buffer, and the ActivationStore writes it once.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/memory.h"

namespace strata {

using SharedBuffer = std::shared_ptr<FloatBuffer>;

class SavedTensors {
 public:
  using Item = std::pair<std::string, SharedBuffer>;

  // Allocates a zeroed, page-aligned buffer of n floats under `name` and returns it.
  float* add(const std::string& name, int64_t n);
  // The same, not zeroed (FloatBuffer::uninitialised): for a tensor its producer writes in full.
  float* add_uninitialised(const std::string& name, int64_t n);
  // Saves an existing buffer under `name`, shared with whoever else holds it.
  void share(const std::string& name, SharedBuffer buf);

  const float* get(const std::string& name) const;
  // For a backward that reuses a saved buffer as scratch: only a buffer this set holds alone
  // (a shared one is read-only; StrataError otherwise).
  float* mutable_get(const std::string& name);
  // Releases one tensor (after its last use: memory drops during the backward, not after it).
  void drop(const std::string& name);
  // The buffer itself, to share it into another set.
  SharedBuffer buffer(const std::string& name) const;
  bool has(const std::string& name) const;
  // Bytes held by the set (each distinct buffer once, padding included).
  int64_t bytes() const;
  // Drops every buffer except `keep` (the block input, from which the rest is recomputed).
  void keep_only(const std::string& keep);
  void clear() { items_.clear(); }
  // Hands every (name, buffer) over in the order they were added, leaving the set empty.
  std::vector<Item> release() { return std::move(items_); }
  bool empty() const { return items_.empty(); }
  const std::vector<Item>& items() const { return items_; }

 private:
  const Item* find(const std::string& name) const;
  const Item& at(const std::string& name) const;  // StrataError naming a tensor not saved
  void insert(const std::string& name, SharedBuffer buf);
  std::vector<Item> items_;
};

}  // namespace strata
