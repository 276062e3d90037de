#pragma once
// Memory accounting: every allocation is charged to a category so peak memory is reported per
// category, not guessed. Buffers are 64-byte aligned (AVX-512 lines), zero-initialised.
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

namespace strata {

enum class MemCategory : int { params, grads, optimizer, activations, comm, io, other, count };
constexpr int kNumMemCategories = static_cast<int>(MemCategory::count);
const char* mem_category_name(MemCategory c);

struct MemorySnapshot {
  std::array<int64_t, kNumMemCategories> current{};
  std::array<int64_t, kNumMemCategories> peak{};
  int64_t total_current = 0;
  int64_t total_peak = 0;
};

class MemoryTracker {
 public:
  static MemoryTracker& instance();
  void charge(MemCategory c, int64_t bytes);
  void release(MemCategory c, int64_t bytes);
  MemorySnapshot snapshot() const;
  // Peaks restart from the current values (e.g. per step).
  void reset_peaks();
  // Cap on the total tracked bytes (0 = none): a charge past it throws StrataError naming the
  // category and the current bytes by category, before anything is allocated.
  void set_limit(int64_t bytes) { limit_.store(bytes); }
  int64_t limit() const { return limit_.load(); }

 private:
  std::array<std::atomic<int64_t>, kNumMemCategories> current_{};
  std::array<std::atomic<int64_t>, kNumMemCategories> peak_{};
  std::atomic<int64_t> total_current_{0};
  std::atomic<int64_t> total_peak_{0};
  std::atomic<int64_t> limit_{0};
};

// "params 1.2 MiB, grads ..." for log lines.
std::string format_memory(const MemorySnapshot& s, bool peaks = true);
std::string format_bytes(int64_t bytes);

// Owning, aligned, zeroed, accounted float buffer. Move-only.
class FloatBuffer {
 public:
  FloatBuffer() = default;
  FloatBuffer(int64_t n, MemCategory cat);
  ~FloatBuffer();
  FloatBuffer(FloatBuffer&& o) noexcept;
  FloatBuffer& operator=(FloatBuffer&& o) noexcept;
  FloatBuffer(const FloatBuffer&) = delete;
  FloatBuffer& operator=(const FloatBuffer&) = delete;

  float* data() { return data_; }
  const float* data() const { return data_; }
  int64_t size() const { return n_; }
  int64_t bytes() const { return n_ * static_cast<int64_t>(sizeof(float)); }
  MemCategory category() const { return cat_; }
  float& operator[](int64_t i) { return data_[i]; }
  float operator[](int64_t i) const { return data_[i]; }
  void zero();
  void reset();  // free now

 private:
  float* data_ = nullptr;
  int64_t n_ = 0;
  MemCategory cat_ = MemCategory::other;
};

}  // namespace strata
