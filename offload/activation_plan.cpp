#include "offload/activation_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>

#include "core/error.h"
#include "core/memory.h"

namespace strata {
namespace {

using Policy = std::vector<ActivationPolicy>;

bool can_swap(const TierBandwidth& bw) {
  return bw.write_bytes_per_s > 0 && bw.read_bytes_per_s > 0;
}

void check_input(const PlanInput& in) {
  auto finite_nonneg = [](double v) { return std::isfinite(v) && v >= 0; };
  for (size_t i = 0; i < in.blocks.size(); ++i) {
    const BlockProfile& b = in.blocks[i];
    STRATA_CHECK(b.saved_bytes >= 0 && b.input_bytes >= 0 && b.input_bytes <= b.saved_bytes,
                 "block " + std::to_string(i) + ": need 0 <= input_bytes <= saved_bytes");
    STRATA_CHECK(finite_nonneg(b.forward_s) && finite_nonneg(b.backward_s),
                 "block " + std::to_string(i) + ": bad forward/backward time");
  }
  STRATA_CHECK(in.budget_bytes >= 0, "negative activation budget");
  STRATA_CHECK(finite_nonneg(in.bw.write_bytes_per_s) && finite_nonneg(in.bw.read_bytes_per_s),
               "bad tier bandwidth");
  STRATA_CHECK(finite_nonneg(in.hide_fraction), "bad hide_fraction");
  STRATA_CHECK(in.writes_in_flight >= 1, "writes in flight must be at least one set");
}

int64_t resident(const BlockProfile& b, ActivationPolicy p) {
  switch (p) {
    case ActivationPolicy::keep:
      return b.saved_bytes;
    case ActivationPolicy::recompute:
      return b.input_bytes;
    case ActivationPolicy::swap:
      return 0;
  }
  return 0;
}

int64_t peak_bytes(const std::vector<BlockProfile>& blocks, const Policy& p) {
  int64_t before = 0, peak = 0;
  for (size_t i = 0; i < blocks.size(); ++i) {
    int64_t transient = blocks[i].saved_bytes;
    if (p[i] == ActivationPolicy::recompute) transient += blocks[i].input_bytes;
    if (i > 0 && p[i - 1] == ActivationPolicy::swap) transient += blocks[i - 1].saved_bytes;
    peak = std::max(peak, before + transient);
    before += resident(blocks[i], p[i]);
  }
  return peak;
}

constexpr double kPrefetchAt = 0.5;  // fraction of a block's backward before reads go out

// The serial-device simulation of the header's time model: the exposed I/O of one micro-batch.
double exposed_io(const std::vector<BlockProfile>& blocks, const Policy& p, const TierBandwidth& bw,
                  int64_t writes_in_flight) {
  double t = 0, device = 0;  // compute clock; when the I/O device is next free
  double exposed = 0;
  std::deque<double> writing;  // when each set still being written lands, oldest first
  for (size_t i = 0; i < blocks.size(); ++i) {
    t += blocks[i].forward_s;
    while (!writing.empty() && writing.front() <= t) writing.pop_front();
    while (std::ssize(writing) > writes_in_flight - 1) {  // the save waits for the oldest
      exposed += writing.front() - t;
      t = writing.front();
      writing.pop_front();
    }
    if (p[i] == ActivationPolicy::swap) {
      device =
          std::max(device, t) + static_cast<double>(blocks[i].saved_bytes) / bw.write_bytes_per_s;
      writing.push_back(device);
    }
  }
  double queued = t;  // block L-1's read is queued before the head
  for (size_t k = blocks.size(); k-- > 0;) {
    if (p[k] == ActivationPolicy::swap) {
      device = std::max(device, queued) +
               static_cast<double>(blocks[k].saved_bytes) / bw.read_bytes_per_s;
      if (device > t) {
        exposed += device - t;
        t = device;
      }
    }
    if (p[k] == ActivationPolicy::recompute) t += blocks[k].forward_s;
    // The next block's reads go out as this backward frees memory, from about halfway through
    // (Model::forward_backward: its MLP tensors after the MLP half, the rest later still).
    queued = t + kPrefetchAt * blocks[k].backward_s;
    t += blocks[k].backward_s;
  }
  return exposed;
}

// Candidate order: lower cost (with a tolerance for rounding), then more kept blocks, then the
// lower peak; a full tie keeps the earlier candidate.
bool better(const ActivationPlan& a, const ActivationPlan& b, double tol) {
  const double ca = a.exposed_io_s + a.recompute_s, cb = b.exposed_io_s + b.recompute_s;
  if (std::abs(ca - cb) > tol) return ca < cb;
  const auto kept = [](const ActivationPlan& x) {
    return std::count(x.policy.begin(), x.policy.end(), ActivationPolicy::keep);
  };
  if (kept(a) != kept(b)) return kept(a) > kept(b);
  return a.peak_bytes < b.peak_bytes;
}

std::string ms(double s) {
  if (s == 0) return "0 ms";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f ms", s * 1e3);
  return buf;
}

}  // namespace

ActivationPlan evaluate_plan(const PlanInput& in, const Policy& policy) {
  check_input(in);
  STRATA_CHECK(policy.size() == in.blocks.size(), "one policy per block");
  ActivationPlan plan;
  plan.policy = policy;
  plan.budget_bytes = in.budget_bytes;
  double compute = 0;
  for (size_t i = 0; i < policy.size(); ++i) {
    compute += in.blocks[i].forward_s + in.blocks[i].backward_s;
    if (policy[i] == ActivationPolicy::recompute) plan.recompute_s += in.blocks[i].forward_s;
    STRATA_CHECK(policy[i] != ActivationPolicy::swap || can_swap(in.bw),
                 "swap planned without a tier bandwidth");
  }
  plan.io_allowance_s = in.hide_fraction * compute;
  plan.peak_bytes = peak_bytes(in.blocks, policy);
  if (can_swap(in.bw))
    plan.exposed_io_s = exposed_io(in.blocks, policy, in.bw, in.writes_in_flight);
  plan.fits = plan.peak_bytes <= in.budget_bytes;
  return plan;
}

ActivationPlan plan_activations(const PlanInput& in) {
  check_input(in);
  const size_t L = in.blocks.size();
  const bool swap_ok = can_swap(in.bw);
  ActivationPlan keep_all = evaluate_plan(in, Policy(L, ActivationPolicy::keep));
  if (keep_all.fits) return keep_all;

  const double tol = 1e-9 * (1 + keep_all.io_allowance_s);
  const auto within = [&](const ActivationPlan& p) {
    return p.exposed_io_s <= p.io_allowance_s + tol;
  };

  std::vector<ActivationPlan> candidates;
  for (size_t k = 0; k <= L; ++k) {
    const size_t m = L - k;  // blocks 0..m-1 are not kept
    Policy base(L, ActivationPolicy::keep);
    std::fill(base.begin(), base.begin() + static_cast<std::ptrdiff_t>(m),
              ActivationPolicy::recompute);
    for (size_t s = 0; s <= (swap_ok ? m : 0); ++s) {
      Policy p = base;
      std::fill(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(s), ActivationPolicy::swap);
      candidates.push_back(evaluate_plan(in, p));
    }
    if (!swap_ok || m < 2) continue;  // m < 2: the prefixes above are every choice
    ActivationPlan cur = evaluate_plan(in, base);
    for (size_t i = 0; i < m; ++i) {
      Policy p = cur.policy;
      p[i] = ActivationPolicy::swap;
      ActivationPlan next = evaluate_plan(in, p);
      if (within(next) &&
          next.exposed_io_s + next.recompute_s <= cur.exposed_io_s + cur.recompute_s + tol)
        cur = std::move(next);
    }
    candidates.push_back(std::move(cur));
  }

  const ActivationPlan* best = nullptr;
  for (int pass = 0; pass < 2 && !best; ++pass)  // pass 0: within the allowance; 1: any
    for (const ActivationPlan& c : candidates)
      if (c.fits && (pass == 1 || within(c)) && (!best || better(c, *best, tol))) best = &c;
  if (best) return *best;

  for (const ActivationPlan& c : candidates)
    if (!best || c.peak_bytes < best->peak_bytes ||
        (c.peak_bytes == best->peak_bytes && better(c, *best, tol)))
      best = &c;
  return *best;  // fits == false
}

std::string ActivationPlan::summary() const {
  std::string s;
  for (size_t i = 0; i < policy.size();) {
    size_t j = i;
    while (j + 1 < policy.size() && policy[j + 1] == policy[i]) ++j;
    s += s.empty() ? "blocks " : ", ";
    s += std::to_string(i);
    if (j > i) {
      s += '-';  // appended piece by piece: GCC 12 warns (-Wrestrict) on "-" + std::string
      s += std::to_string(j);
    }
    s += ' ';
    s += activation_policy_name(policy[i]);
    i = j + 1;
  }
  if (s.empty()) s = "no blocks";
  s += "; est. peak " + format_bytes(peak_bytes) + " of " + format_bytes(budget_bytes) + " budget" +
       (fits ? "" : " (does not fit)") + ", exposed I/O " + ms(exposed_io_s);
  if (exposed_io_s > io_allowance_s * (1 + 1e-9) + 1e-12)
    s += " (over the " + ms(io_allowance_s) + " allowance)";
  s += ", recompute " + ms(recompute_s);
  return s;
}

}  // namespace strata
