#include "core/profile.h"

#include <omp.h>

#include <chrono>
#include <vector>

namespace strata {

namespace {

using Clock = std::chrono::steady_clock;

struct State {
  bool on = false;
  ProfileTotals totals;
  std::vector<ProfOp> stack;  // the open scopes, innermost last
  Clock::time_point since;    // when the innermost scope last started or resumed
};

State& state() {
  static State s;
  return s;
}

// Charges the time since the last event to the innermost open scope.
void charge(State& s, Clock::time_point now) {
  if (!s.stack.empty())
    s.totals.seconds[static_cast<size_t>(s.stack.back())] +=
        std::chrono::duration<double>(now - s.since).count();
  s.since = now;
}

}  // namespace

const char* prof_op_name(ProfOp op) {
  static const char* names[] = {"GEMM",       "attention", "norms", "elementwise",
                                "bf16 casts", "optimizer", "copies"};
  return names[static_cast<int>(op)];
}

void profile_enable(bool on) { state().on = on; }
bool profile_enabled() { return state().on; }
void profile_reset() { state().totals = ProfileTotals{}; }
ProfileTotals profile_totals() { return state().totals; }

// Scopes inside an OpenMP parallel region (a GEMM per head of the attention kernel) are not
// recorded: their time is their enclosing scope's.
ProfScope::ProfScope(ProfOp op) : on_(state().on && !omp_in_parallel()) {
  if (!on_) return;
  State& s = state();
  start_ = Clock::now();
  charge(s, start_);
  s.stack.push_back(op);
  ++s.totals.calls[static_cast<size_t>(op)];
}

ProfScope::~ProfScope() {
  if (!on_) return;
  State& s = state();
  const Clock::time_point now = Clock::now();
  charge(s, now);
  if (s.stack.empty()) return;
  const ProfOp op = s.stack.back();
  s.stack.pop_back();
  bool outermost = true;  // of its kind: a GEMM inside a GEMM scope is counted once
  for (ProfOp o : s.stack) outermost = outermost && o != op;
  if (outermost)
    s.totals.inclusive[static_cast<size_t>(op)] +=
        std::chrono::duration<double>(now - start_).count();
}

}  // namespace strata
