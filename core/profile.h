#pragma once
// Where a step's time goes, by kind of op: exclusive wall time of scopes (a GEMM inside the
// attention kernel counts as GEMM, not attention), for bench/step_bench --profile. Off (the
// default) a scope costs one branch. Main thread only: ops called from OpenMP workers are inside
// a scope of the main thread.
#include <array>
#include <chrono>
#include <cstdint>

namespace strata {

enum class ProfOp : int { gemm, attention, norm, elementwise, convert, optimizer, copy, count };
constexpr int kProfOps = static_cast<int>(ProfOp::count);
const char* prof_op_name(ProfOp op);

struct ProfileTotals {
  std::array<double, kProfOps> seconds{};  // exclusive
  std::array<double, kProfOps>
      inclusive{};  // with the scopes nested inside (e.g. attention's GEMMs)
  std::array<int64_t, kProfOps> calls{};
};

void profile_enable(bool on);
bool profile_enabled();
void profile_reset();
ProfileTotals profile_totals();

class ProfScope {
 public:
  explicit ProfScope(ProfOp op);
  ~ProfScope();
  ProfScope(const ProfScope&) = delete;
  ProfScope& operator=(const ProfScope&) = delete;

 private:
  bool on_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace strata
