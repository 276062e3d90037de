#pragma once
// The allocations `strata plan` replays, without allocating: a buffer is an id charged to a
// memory category, and the ledger keeps the current and peak bytes per category exactly as
// core/memory.h's MemoryTracker does for the real buffers (peaks per category, and of the total).
#include <array>
#include <cstdint>
#include <map>
#include <utility>

#include "core/memory.h"

namespace strata {

class Ledger {
 public:
  using Id = int64_t;
  static constexpr Id kNone = -1;

  // What a buffer of n floats is charged: a FloatBuffer its bytes, a page-aligned one (saved
  // activations, SavedTensors::add) its bytes rounded up to whole pages.
  static double floats(double n) { return 4 * n; }
  static double paged(double n) {
    const double page = static_cast<double>(FloatBuffer::kPageAlign);
    const double b = 4 * n;
    return static_cast<double>(static_cast<int64_t>((b + page - 1) / page)) * page;
  }

  Id alloc(MemCategory c, double bytes) {
    if (bytes <= 0) return kNone;
    const Id id = next_++;
    live_[id] = {c, bytes};
    add(c, bytes);
    return id;
  }
  void free(Id& id) {
    auto it = live_.find(id);
    id = kNone;
    if (it == live_.end()) return;
    add(it->second.first, -it->second.second);
    live_.erase(it);
  }
  // A buffer that changes hands (an activation handed to the swap tier becomes io).
  void move(Id id, MemCategory to) {
    auto it = live_.find(id);
    if (it == live_.end()) return;
    add(it->second.first, -it->second.second);
    it->second.first = to;
    add(to, it->second.second);
  }
  double bytes(Id id) const {
    auto it = live_.find(id);
    return it == live_.end() ? 0 : it->second.second;
  }
  void reset_peaks() {
    peak_ = cur_;
    total_peak_ = total_;
  }
  double peak(MemCategory c) const { return peak_[static_cast<int>(c)]; }
  double current(MemCategory c) const { return cur_[static_cast<int>(c)]; }
  double total_peak() const { return total_peak_; }

 private:
  void add(MemCategory c, double b) {
    const int i = static_cast<int>(c);
    cur_[i] += b;
    total_ += b;
    if (cur_[i] > peak_[i]) peak_[i] = cur_[i];
    if (total_ > total_peak_) total_peak_ = total_;
  }
  std::map<Id, std::pair<MemCategory, double>> live_;
  std::array<double, kNumMemCategories> cur_{}, peak_{};
  double total_ = 0, total_peak_ = 0;
  Id next_ = 0;
};

}  // namespace strata
