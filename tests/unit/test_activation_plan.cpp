// The `auto` activation planner (keep the last blocks, swap what the I/O hides, recompute the
// rest) against its stated memory and time models, over budget sweeps; and the tier bandwidth
// probe on real host and nvme tiers and on a tier that corrupts data.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "offload/activation_plan.h"
#include "offload/tier.h"
#include "offload/tier_probe.h"

namespace strata {

// Readable gtest failures (found by ADL, hence here and not in the unnamed namespace).
void PrintTo(ActivationPolicy p, std::ostream* os) { *os << activation_policy_name(p); }

namespace {

using P = ActivationPolicy;
constexpr int64_t MiB = 1 << 20;
constexpr P S = P::swap;

// "sskk" -> {swap, swap, keep, keep}. Not a braced list of enum constants: GCC 12.2 with
// -march=native (AVX-512, SLP vectorizer) miscompiles std::vector<P>{S, S, S, S, K, K, K, K} into
// eight S here.
std::vector<P> pol(const std::string& s) {
  std::vector<P> v;
  for (char c : s) v.push_back(c == 'k' ? P::keep : c == 'r' ? P::recompute : P::swap);
  return v;
}

// 8 blocks of 64 MiB saved, 8 MiB input, 10 ms forward, 20 ms backward.
PlanInput uniform(int64_t budget, double bw) {
  PlanInput in;
  in.blocks.assign(8, BlockProfile{64 * MiB, 8 * MiB, 0.010, 0.020});
  in.budget_bytes = budget;
  in.bw = {bw, bw};
  return in;
}

double cost(const ActivationPlan& p) { return p.exposed_io_s + p.recompute_s; }

TEST(ActivationPlan, AllKeepWhenTheBudgetIsAmple) {
  const ActivationPlan p = plan_activations(uniform(1024 * MiB, 1e11));
  EXPECT_EQ(p.policy, std::vector<P>(8, P::keep));
  EXPECT_TRUE(p.fits);
  EXPECT_EQ(p.peak_bytes, 512 * MiB);  // all keep: the sum of the saved sets
  EXPECT_EQ(cost(p), 0);
}

TEST(ActivationPlan, MemoryModel) {
  PlanInput in;
  in.blocks = {{100, 10, 1, 1}, {200, 20, 1, 1}, {300, 30, 1, 1}, {400, 40, 1, 1}};
  in.bw = {1e9, 1e9};
  EXPECT_EQ(evaluate_plan(in, pol("kkkk")).peak_bytes, 1000);
  // i=1: its set 200 + its input while rebuilt 20 + block 0's set prefetched 100 = 320;
  // i=3: block 1's input 20 resident + its set 400 + block 2's prefetched 300 = 720.
  EXPECT_EQ(evaluate_plan(in, pol("srsk")).peak_bytes, 720);
  // All recompute: inputs 10+20+30 resident + 400 + 40 at block 3.
  EXPECT_EQ(evaluate_plan(in, pol("rrrr")).peak_bytes, 500);
}

TEST(ActivationPlan, TimeModel) {
  PlanInput in;
  in.blocks = {{100, 10, 1.0, 1.0}, {100, 10, 1.0, 1.0}};
  in.bw = {100, 50};  // a write takes 1 s, a read 2 s
  // Block 1 swapped: written 2..3, read queued at 2 (before the head), lands at 5: 3 s exposed.
  EXPECT_DOUBLE_EQ(evaluate_plan(in, pol("ks")).exposed_io_s, 3.0);
  // Block 0 swapped: written 1..2; read queued halfway through block 1's backward (at 2.5),
  // lands at 4.5, while block 1's backward ends at 3: 1.5 s exposed.
  EXPECT_DOUBLE_EQ(evaluate_plan(in, pol("sk")).exposed_io_s, 1.5);
  // Block 1 recomputed: its backward runs 3..4 after the rebuild; block 0's read is queued at
  // 3.5, lands at 5.5.
  const ActivationPlan p = evaluate_plan(in, pol("sr"));
  EXPECT_DOUBLE_EQ(p.exposed_io_s, 1.5);
  EXPECT_DOUBLE_EQ(p.recompute_s, 1.0);
  EXPECT_DOUBLE_EQ(p.io_allowance_s, 0.05 * 4.0);
}

// offload.writes_in_flight: a block's save waits for the oldest sets' writes (the forward
// stalls), which the time model counts as exposed I/O. Writes take 2 s, reads 1 s, blocks 1 s
// each way; "ssk".
// One set: block 0 writes 1..3, block 1's save at 2 waits to 3 and writes 3..5, block 2's save
// at 4 waits to 5 (2 s); the backward: block 1's read queued at 5.5 lands at 6.5 (0.5 s after
// block 2's backward), block 0's queued at 7 lands at 8 (0.5 s): 3 s in all.
// Two sets: no stall, the forward ends at 3; block 1's read waits for the device (free at 5)
// and lands at 6 (2 s after block 2's backward), block 0's at 7.5 (0.5 s): 2.5 s.
TEST(ActivationPlan, TheBoundOnWritesInFlightStallsTheForward) {
  PlanInput in;
  in.blocks.assign(3, BlockProfile{100, 10, 1.0, 1.0});
  in.bw = {50, 100};
  EXPECT_DOUBLE_EQ(evaluate_plan(in, pol("ssk")).exposed_io_s, 3.0);
  in.writes_in_flight = 2;
  EXPECT_DOUBLE_EQ(evaluate_plan(in, pol("ssk")).exposed_io_s, 2.5);
  in.writes_in_flight = 0;
  EXPECT_THROW(evaluate_plan(in, pol("ssk")), StrataError);
}

TEST(ActivationPlan, FastIoSwapsEarlyBlocksAndKeepsTheLast) {
  const ActivationPlan p = plan_activations(uniform(256 * MiB, 1e11));
  // Keeping 4 blocks peaks at exactly 256 MiB (3 kept + the 4th's set in its backward); the
  // other 4 swap with every transfer hidden.
  EXPECT_EQ(p.policy, pol("sssskkkk")) << p.summary();
  EXPECT_TRUE(p.fits);
  EXPECT_EQ(p.peak_bytes, 256 * MiB);
  EXPECT_EQ(p.exposed_io_s, 0);
  EXPECT_EQ(p.recompute_s, 0);
}

TEST(ActivationPlan, SlowIoRecomputesInsteadOfSwapping) {
  const ActivationPlan p = plan_activations(uniform(200 * MiB, 1e6));  // 1 MB/s
  EXPECT_EQ(p.policy, pol("rrrrrrkk")) << p.summary();
  EXPECT_TRUE(p.fits);
  EXPECT_EQ(p.peak_bytes, 176 * MiB);  // 6 inputs of 8 + kept 64 + the last block's 64
  EXPECT_EQ(p.exposed_io_s, 0);
  EXPECT_NEAR(p.recompute_s, 0.060, 1e-12);
}

TEST(ActivationPlan, NoTierNeverSwaps) {
  const ActivationPlan p = plan_activations(uniform(200 * MiB, 0));
  for (P x : p.policy) EXPECT_NE(x, S);
  EXPECT_TRUE(p.fits);
}

TEST(ActivationPlan, BelowTheMinimumDoesNotFit) {
  const PlanInput in = uniform(100 * MiB, 1e11);
  const ActivationPlan p = plan_activations(in);
  EXPECT_FALSE(p.fits);
  EXPECT_GT(p.peak_bytes, in.budget_bytes);
  // The lowest peak there is: 7 recomputed inputs of 8 MiB + the kept last block's 64 MiB (every
  // swap needs two sets at once in backward: 128 MiB).
  EXPECT_EQ(p.peak_bytes, 120 * MiB);
  EXPECT_EQ(p.policy, pol("rrrrrrrk")) << p.summary();
  EXPECT_LE(p.peak_bytes, evaluate_plan(in, std::vector<P>(8, P::recompute)).peak_bytes);
  EXPECT_NE(p.summary().find("does not fit"), std::string::npos) << p.summary();
}

TEST(ActivationPlan, OverTheAllowanceOnlyWhenNothingWithinFits) {
  // Large inputs make recompute expensive in memory; the I/O (100 MB/s) cannot hide 64 MiB.
  PlanInput in = uniform(300 * MiB, 1e8);
  for (BlockProfile& b : in.blocks) b.input_bytes = 48 * MiB;
  ASSERT_FALSE(evaluate_plan(in, std::vector<P>(8, P::recompute)).fits);
  const ActivationPlan p = plan_activations(in);
  EXPECT_TRUE(p.fits);
  EXPECT_LE(p.peak_bytes, in.budget_bytes);
  EXPECT_GT(p.exposed_io_s, p.io_allowance_s);
  EXPECT_NE(p.summary().find("over the"), std::string::npos) << p.summary();
}

// Budget sweeps over uniform and random profiles and fast, medium, slow and no I/O: a fitting
// plan's peak is within the budget, the plan's numbers are the models' for its policy, the same
// input gives the same plan, and a larger budget never costs more.
TEST(ActivationPlan, SweepsAreConsistentAndMonotone) {
  std::mt19937 rng(7);
  std::vector<PlanInput> inputs;
  for (int r = 0; r < 6; ++r) {
    PlanInput in;
    const int L = r == 0 ? 8 : 3 + static_cast<int>(rng() % 10);
    for (int i = 0; i < L; ++i) {
      BlockProfile b;
      b.saved_bytes = r == 0 ? 64 * MiB : (16 + static_cast<int64_t>(rng() % 100)) * MiB;
      b.input_bytes = b.saved_bytes / (2 + static_cast<int64_t>(rng() % 8));
      b.forward_s = 0.005 + 0.001 * (rng() % 20);
      b.backward_s = 2 * b.forward_s;
      in.blocks.push_back(b);
    }
    inputs.push_back(in);
  }
  for (double bw : {0.0, 1e6, 2e9, 5e9, 1e11}) {
    for (PlanInput in : inputs) {
      in.bw = {bw, bw * 1.5};
      ActivationPlan prev;
      bool have_prev = false;
      for (int64_t budget = 0; budget <= 1600 * MiB; budget += 8 * MiB) {
        in.budget_bytes = budget;
        const ActivationPlan p = plan_activations(in);
        const std::string what = "bw " + std::to_string(bw) + ": " + p.summary();
        ASSERT_EQ(p.policy.size(), in.blocks.size());
        if (p.fits) {
          EXPECT_LE(p.peak_bytes, budget) << what;
        }
        const ActivationPlan e = evaluate_plan(in, p.policy);
        EXPECT_EQ(e.peak_bytes, p.peak_bytes) << what;
        EXPECT_DOUBLE_EQ(e.exposed_io_s, p.exposed_io_s) << what;
        EXPECT_DOUBLE_EQ(e.recompute_s, p.recompute_s) << what;
        EXPECT_EQ(plan_activations(in).policy, p.policy) << what;
        // Plans without swap expose nothing, so whenever one of them fits the hide limit holds.
        if (evaluate_plan(in, std::vector<P>(in.blocks.size(), P::recompute)).fits) {
          EXPECT_TRUE(p.fits) << what;
          EXPECT_LE(p.exposed_io_s, p.io_allowance_s + 1e-12) << what;
        }
        if (bw == 0) {
          for (P x : p.policy) EXPECT_NE(x, S) << what;
        }
        if (have_prev && prev.fits && prev.exposed_io_s <= prev.io_allowance_s) {
          EXPECT_TRUE(p.fits) << what;
          EXPECT_LE(cost(p), cost(prev) + 1e-9) << what << " after " << prev.summary();
        }
        prev = p;
        have_prev = true;
      }
      EXPECT_TRUE(prev.fits);  // 1600 MiB holds every set of every profile
      EXPECT_EQ(prev.policy, std::vector<P>(in.blocks.size(), P::keep));
    }
  }
}

TEST(ActivationPlan, SummaryNamesRanges) {
  ActivationPlan p;
  p.policy = pol("ssssrrkk");
  p.peak_bytes = 130 * MiB + MiB / 5;
  p.budget_bytes = 512 * MiB;
  p.exposed_io_s = 0.0031;
  p.io_allowance_s = 0.01;
  EXPECT_EQ(p.summary(),
            "blocks 0-3 swap, 4-5 recompute, 6-7 keep; est. peak 130.2MiB of 512.0MiB budget, "
            "exposed I/O 3.1 ms, recompute 0 ms");
  p.policy = pol("srsk");
  EXPECT_TRUE(p.summary().starts_with("blocks 0 swap, 1 recompute, 2 swap, 3 keep; "))
      << p.summary();
  p.policy = pol("k");
  EXPECT_TRUE(p.summary().starts_with("blocks 0 keep; ")) << p.summary();
}

// ---------------------------------------------------------------------------------------------

void expect_sane(const TierBandwidth& bw) {
  EXPECT_TRUE(std::isfinite(bw.write_bytes_per_s) && bw.write_bytes_per_s > 0);
  EXPECT_TRUE(std::isfinite(bw.read_bytes_per_s) && bw.read_bytes_per_s > 0);
}

TEST(TierProbe, HostTier) {
  SwapOptions o;
  o.tier = SwapTierKind::host;
  auto tier = SwapTier::create(o);
  expect_sane(probe_tier_bandwidth(*tier, 16 * MiB, 4 * MiB));
  EXPECT_EQ(tier->bytes_used(), 0);
  expect_sane(probe_tier_bandwidth(*tier));  // the defaults: 64 MiB in 8 MiB pieces
  EXPECT_EQ(tier->bytes_used(), 0);
}

class TierProbeNvme : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata_probe_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<SwapTier> nvme_tier(int64_t capacity) const {
    SwapOptions o;
    o.tier = SwapTierKind::nvme;
    o.dir = dir_;
    o.capacity_bytes = capacity;
    return SwapTier::create(o);
  }
  std::string dir_;
};

TEST_F(TierProbeNvme, MeasuresAndLeavesTheTierEmpty) {
  auto tier = nvme_tier(64 * MiB);
  expect_sane(probe_tier_bandwidth(*tier, 16 * MiB, 4 * MiB));
  EXPECT_EQ(tier->bytes_used(), 0);
  // Pieces that are not a multiple of the direct-I/O unit (padded by the tier).
  expect_sane(probe_tier_bandwidth(*tier, 3 * MiB, 300004));
  EXPECT_EQ(tier->bytes_used(), 0);
}

TEST_F(TierProbeNvme, TooSmallATierIsAClearError) {
  auto tier = nvme_tier(4 * MiB);
  try {
    probe_tier_bandwidth(*tier, 16 * MiB, 4 * MiB);
    FAIL() << "expected no room";
  } catch (const StrataError& e) {
    EXPECT_NE(std::string(e.what()).find("no room"), std::string::npos) << e.what();
  }
  EXPECT_EQ(tier->bytes_used(), 0);
}

// A memory tier that flips one bit of the third handle it hands back.
class CorruptingTier : public SwapTier {
 public:
  CorruptingTier() : SwapTier(1ll << 30) {}
  Handle write(const float* src, int64_t bytes) override {
    std::vector<char>& d = live_[next_];
    d.assign(reinterpret_cast<const char*>(src), reinterpret_cast<const char*>(src) + bytes);
    used_ += bytes;
    return next_++;
  }
  FloatBuffer read_buffer(Handle h, MemCategory cat) override {
    FloatBuffer out(static_cast<int64_t>(live_.at(h).size() / 4), cat);
    read(h, out.data());
    return out;
  }
  void prefetch(Handle) override {}
  void read(Handle h, float* dst) override {
    std::vector<char>& d = live_.at(h);
    if (h == 2) d[d.size() / 2] ^= 1;
    std::memcpy(dst, d.data(), d.size());
    discard(h);
  }
  void discard(Handle h) override {
    used_ -= static_cast<int64_t>(live_.at(h).size());
    live_.erase(h);
  }
  const char* name() const override { return "corrupting"; }
  int64_t bytes_used() const override { return used_; }

 private:
  std::map<Handle, std::vector<char>> live_;
  Handle next_ = 0;
  int64_t used_ = 0;
};

TEST(TierProbe, CorruptDataIsAnErrorAndTheTierIsLeftEmpty) {
  CorruptingTier tier;
  try {
    probe_tier_bandwidth(tier, 4 * MiB, MiB);
    FAIL() << "expected the corruption to be caught";
  } catch (const StrataError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("swap tier corrupting"), std::string::npos) << msg;
    EXPECT_NE(msg.find("piece 2 of 4"), std::string::npos) << msg;
  }
  EXPECT_EQ(tier.bytes_used(), 0);
}

}  // namespace
}  // namespace strata
