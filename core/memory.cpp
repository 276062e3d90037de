#include "core/memory.h"

#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>

#include "core/block_cache.h"
#include "core/error.h"

namespace strata {

const char* mem_category_name(MemCategory c) {
  switch (c) {
    case MemCategory::params:
      return "params";
    case MemCategory::grads:
      return "grads";
    case MemCategory::optimizer:
      return "optimizer";
    case MemCategory::activations:
      return "activations";
    case MemCategory::comm:
      return "comm";
    case MemCategory::io:
      return "io";
    case MemCategory::other:
      return "other";
    default:
      return "?";
  }
}

MemoryTracker& MemoryTracker::instance() {
  static MemoryTracker t;
  return t;
}

static void raise_peak(std::atomic<int64_t>& peak, int64_t v) {
  int64_t p = peak.load(std::memory_order_relaxed);
  while (v > p && !peak.compare_exchange_weak(p, v, std::memory_order_relaxed)) {
  }
}

void MemoryTracker::charge(MemCategory c, int64_t bytes) {
  const int64_t limit = limit_.load(std::memory_order_relaxed);
  if (limit > 0 && total_current_.load(std::memory_order_relaxed) + bytes > limit)
    throw StrataError("memory cap exceeded: allocating " + format_bytes(bytes) + " of " +
                      mem_category_name(c) + " would exceed train.max_memory_mb = " +
                      format_bytes(limit) + " (now held: " + format_memory(snapshot(), false) +
                      "); raise the cap, use offload.policy: recompute, or split the sequence "
                      "over more ranks (parallel.sp)");
  const int i = static_cast<int>(c);
  raise_peak(peak_[i], current_[i].fetch_add(bytes, std::memory_order_relaxed) + bytes);
  raise_peak(total_peak_, total_current_.fetch_add(bytes, std::memory_order_relaxed) + bytes);
}

void MemoryTracker::release(MemCategory c, int64_t bytes) {
  current_[static_cast<int>(c)].fetch_sub(bytes, std::memory_order_relaxed);
  total_current_.fetch_sub(bytes, std::memory_order_relaxed);
}

void MemoryTracker::move(MemCategory from, MemCategory to, int64_t bytes) {
  current_[static_cast<int>(from)].fetch_sub(bytes, std::memory_order_relaxed);
  const int i = static_cast<int>(to);
  raise_peak(peak_[i], current_[i].fetch_add(bytes, std::memory_order_relaxed) + bytes);
}

MemorySnapshot MemoryTracker::snapshot() const {
  MemorySnapshot s;
  for (int i = 0; i < kNumMemCategories; ++i) {
    s.current[i] = current_[i].load();
    s.peak[i] = peak_[i].load();
  }
  s.total_current = total_current_.load();
  s.total_peak = total_peak_.load();
  return s;
}

void MemoryTracker::reset_peaks() {
  for (int i = 0; i < kNumMemCategories; ++i) peak_[i].store(current_[i].load());
  total_peak_.store(total_current_.load());
}

std::string format_bytes(int64_t b) {
  char buf[32];
  const double v = static_cast<double>(b);
  if (b >= (1LL << 30))
    std::snprintf(buf, sizeof buf, "%.2fGiB", v / (1LL << 30));
  else if (b >= (1LL << 20))
    std::snprintf(buf, sizeof buf, "%.1fMiB", v / (1LL << 20));
  else if (b >= (1LL << 10))
    std::snprintf(buf, sizeof buf, "%.1fKiB", v / (1LL << 10));
  else
    std::snprintf(buf, sizeof buf, "%lldB", static_cast<long long>(b));
  return buf;
}

std::string format_memory(const MemorySnapshot& s, bool peaks) {
  std::ostringstream os;
  const auto& v = peaks ? s.peak : s.current;
  for (int i = 0; i < kNumMemCategories; ++i) {
    if (v[i] == 0) continue;
    os << mem_category_name(static_cast<MemCategory>(i)) << "=" << format_bytes(v[i]) << " ";
  }
  os << "total=" << format_bytes(peaks ? s.total_peak : s.total_current);
  return os.str();
}

namespace {

// Zeroing is a large share of a step's time when buffers come and go per block (first touch of
// fresh pages included): large buffers are zeroed by every thread, each its own pages.
void zero_bytes(void* p, int64_t bytes) {
  constexpr int64_t kParallel = int64_t{1} << 20, kChunk = int64_t{1} << 16;
  if (bytes < kParallel || omp_in_parallel()) {
    std::memset(p, 0, static_cast<size_t>(bytes));
    return;
  }
  char* c = static_cast<char*>(p);
  const int64_t chunks = (bytes + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < chunks; ++i)
    std::memset(c + i * kChunk, 0, static_cast<size_t>(std::min(kChunk, bytes - i * kChunk)));
}

// A block of at least a huge page (2 MiB) starts on one and asks for transparent huge pages
// (the kernel's default mode, "madvise", gives none unless asked): a step streams through tens
// of MiB of operands per GEMM and element-wise pass, and with 4 KiB pages their TLB misses cost
// 3-4% of the step benchmark's step (fp32 and bf16 alike, measured side by side). The advice is
// only a hint: without THP the block is the same memory on small pages. Nothing is padded, so
// the bytes charged are the bytes asked for; the alignment is a function of (bytes, align)
// only, so a block the cache hands back for the same key is aligned the same way.
// (posix_memalign: aligned_alloc wants the size a multiple of the alignment.)
void* allocate_block(int64_t bytes, int64_t align) {
  if (bytes < FloatBuffer::kHugePageBytes)
    return std::aligned_alloc(static_cast<size_t>(align), static_cast<size_t>(bytes));
  void* p = nullptr;
  const auto huge_align = static_cast<size_t>(std::max(align, FloatBuffer::kHugePageBytes));
  if (posix_memalign(&p, huge_align, static_cast<size_t>(bytes)) != 0) return nullptr;
  madvise(p, static_cast<size_t>(bytes), MADV_HUGEPAGE);  // a hint: its failure changes nothing
  return p;
}

}  // namespace

FloatBuffer::FloatBuffer(int64_t n, MemCategory cat, int64_t alignment)
    : FloatBuffer(n, cat, alignment, true) {}

FloatBuffer FloatBuffer::uninitialised(int64_t n, MemCategory cat, int64_t alignment) {
  return FloatBuffer(n, cat, alignment, false);
}

FloatBuffer::FloatBuffer(int64_t n, MemCategory cat, int64_t alignment, bool zeroed)
    : n_(n), align_(alignment), cat_(cat) {
  STRATA_CHECK(alignment >= 64 && (alignment & (alignment - 1)) == 0,
               "FloatBuffer alignment must be a power of two >= 64");
  if (n_ <= 0) {
    n_ = 0;
    return;
  }
  cap_ = capacity_for(n_, align_);
  MemoryTracker::instance().charge(cat_, charged());  // first: it may refuse (memory cap)
  data_ = static_cast<float*>(block_cache_take(cap_, align_));
  if (!data_) data_ = static_cast<float*>(allocate_block(cap_, align_));
  if (!data_) {
    MemoryTracker::instance().release(cat_, charged());
    throw std::bad_alloc();
  }
  if (zeroed)
    zero_bytes(data_, cap_);
  else
    std::memset(reinterpret_cast<char*>(data_) + bytes(), 0, static_cast<size_t>(cap_ - bytes()));
}

FloatBuffer::~FloatBuffer() { reset(); }

void FloatBuffer::reset() {
  if (data_) {
    MemoryTracker::instance().release(cat_, charged());  // first: the cache's cap check
    block_cache_give(data_, cap_, align_);
  }
  data_ = nullptr;
  n_ = 0;
  cap_ = 0;
}

void FloatBuffer::set_category(MemCategory cat) {
  if (data_ && cat != cat_) MemoryTracker::instance().move(cat_, cat, charged());
  cat_ = cat;
}

FloatBuffer::FloatBuffer(FloatBuffer&& o) noexcept
    : data_(o.data_), n_(o.n_), cap_(o.cap_), align_(o.align_), cat_(o.cat_) {
  o.data_ = nullptr;
  o.n_ = 0;
  o.cap_ = 0;
}

FloatBuffer& FloatBuffer::operator=(FloatBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    data_ = o.data_;
    n_ = o.n_;
    cap_ = o.cap_;
    align_ = o.align_;
    cat_ = o.cat_;
    o.data_ = nullptr;
    o.n_ = 0;
    o.cap_ = 0;
  }
  return *this;
}

void FloatBuffer::zero() {
  if (data_) zero_bytes(data_, n_ * static_cast<int64_t>(sizeof(float)));
}

}  // namespace strata
