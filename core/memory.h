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
  // Moves `bytes` from one category to another (the total is unchanged, so the cap is not
  // consulted): a buffer that changes hands, e.g. an activation handed to an I/O transfer.
  void move(MemCategory from, MemCategory to, int64_t bytes);
  // Cap on the total tracked bytes (0 = none): a charge past it throws StrataError naming the
  // category and the current bytes by category, before anything is allocated.
  void set_limit(int64_t bytes) { limit_.store(bytes); }
  int64_t limit() const { return limit_.load(); }
  int64_t total_current() const { return total_current_.load(std::memory_order_relaxed); }

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
// The default alignment is 64 bytes (AVX-512 lines). With kPageAlign the allocation is also
// padded to a whole number of pages, so the buffer can be the source or destination of direct
// I/O as it is (no staging copy); such a buffer is charged its padded size, which is real memory.
class FloatBuffer {
 public:
  static constexpr int64_t kPageAlign = 4096;
  // Buffers of at least this many bytes start on a 2 MiB boundary and are advised for
  // transparent huge pages (memory.cpp says why).
  static constexpr int64_t kHugePageBytes = int64_t{1} << 21;
  FloatBuffer() = default;
  FloatBuffer(int64_t n, MemCategory cat, int64_t alignment = 64);
  // For a buffer its producer writes in full before anything reads it (a GEMM's output, a
  // copy's destination): not zeroed, which is most of the cost of a large activation buffer
  // (only the padding past bytes() is zeroed, so what a swap tier writes is defined).
  static FloatBuffer uninitialised(int64_t n, MemCategory cat, int64_t alignment = 64);
  ~FloatBuffer();
  FloatBuffer(FloatBuffer&& o) noexcept;
  FloatBuffer& operator=(FloatBuffer&& o) noexcept;
  FloatBuffer(const FloatBuffer&) = delete;
  FloatBuffer& operator=(const FloatBuffer&) = delete;

  float* data() { return data_; }
  const float* data() const { return data_; }
  int64_t size() const { return n_; }
  int64_t bytes() const { return n_ * static_cast<int64_t>(sizeof(float)); }
  // Bytes allocated: bytes() rounded up to the alignment (zeroed past bytes() at allocation).
  int64_t capacity_bytes() const { return cap_; }
  // capacity_bytes() of a buffer of n floats, before there is one.
  static int64_t capacity_for(int64_t n, int64_t alignment = 64) {
    const int64_t b = n > 0 ? n * static_cast<int64_t>(sizeof(float)) : 0;
    return (b + alignment - 1) / alignment * alignment;
  }
  int64_t alignment() const { return align_; }
  MemCategory category() const { return cat_; }
  // Re-charges the buffer to another category (the memory stays where it is).
  void set_category(MemCategory cat);
  float& operator[](int64_t i) { return data_[i]; }
  float operator[](int64_t i) const { return data_[i]; }
  void zero();
  void reset();  // free now

 private:
  FloatBuffer(int64_t n, MemCategory cat, int64_t alignment, bool zeroed);
  int64_t charged() const { return align_ > 64 ? cap_ : bytes(); }

  float* data_ = nullptr;
  int64_t n_ = 0;
  int64_t cap_ = 0;
  int64_t align_ = 64;
  MemCategory cat_ = MemCategory::other;
};

}  // namespace strata
