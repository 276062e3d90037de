#pragma once
// An exception that leaves an OpenMP parallel region calls std::terminate ("terminate called
// recursively" when several threads throw). Every region whose body can throw (an allocation, a
// GEMM, a tracked buffer past train.max_memory_mb) runs its body through OmpExceptionGuard: the
// first exception is kept, the remaining iterations are skipped, and it is rethrown on the
// calling thread once the region has ended.
//
//   OmpExceptionGuard guard;
//   #pragma omp parallel for
//   for (int64_t i = 0; i < n; ++i) guard.run([&] { work(i); });
//   guard.rethrow();
#include <atomic>
#include <exception>
#include <mutex>

namespace strata {

class OmpExceptionGuard {
 public:
  template <class F>
  void run(F&& f) noexcept {
    if (failed_.load(std::memory_order_relaxed)) return;  // a failure is final: skip the rest
    try {
      f();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!first_) first_ = std::current_exception();
      failed_.store(true, std::memory_order_relaxed);
    }
  }
  // On the calling thread, after the region.
  void rethrow() {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::mutex mu_;
  std::exception_ptr first_;
};

}  // namespace strata
