// Optimizers, LR schedules, gradient clipping and the sgemm peak probe, checked against scalar
// references written out from the PyTorch formulas.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "core/error.h"
#include "core/memory.h"
#include "core/peak.h"
#include "optim/adamw.h"
#include "optim/grad_norm.h"
#include "optim/lr_schedule.h"
#include "optim/optimizer.h"
#include "optim/sgd.h"

// The references below must round each operation as the optimizers (and PyTorch) do, so they can
// be compared bit for bit.
#include "optim/no_fp_contract.h"

namespace strata {
namespace {

std::vector<float> random_vec(int64_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(gen);
  return v;
}

// A buffer shaped like a block: a matrix, a norm gain, another matrix. 77 elements so the
// vector loops have both full vectors and tails.
const std::vector<DecaySegment> kSegments = {{0, 40, true}, {40, 13, false}, {53, 24, true}};
constexpr int64_t kN = 77;

bool decays_at(const std::vector<DecaySegment>& segs, int64_t i) {
  for (const auto& s : segs)
    if (i >= s.offset && i < s.offset + s.numel) return s.decay;
  return false;
}

// torch.optim.AdamW (single-tensor path), one element, fp32 with double-formed scalars.
struct AdamWRef {
  float m = 0, v = 0;
  void step(float& p, float g, float lr, int64_t t, const AdamWOptions& o, bool decay) {
    if (decay) p *= static_cast<float>(1.0 - static_cast<double>(lr) * o.weight_decay);
    m = m + static_cast<float>(1.0 - o.beta1) * (g - m);
    v = v * o.beta2 + (static_cast<float>(1.0 - o.beta2) * g) * g;
    const double bc1 = 1.0 - std::pow(static_cast<double>(o.beta1), static_cast<double>(t));
    const double bc2 = 1.0 - std::pow(static_cast<double>(o.beta2), static_cast<double>(t));
    const float denom = std::sqrt(v) / static_cast<float>(std::sqrt(bc2)) + o.eps;
    p = p + (static_cast<float>(-(lr / bc1)) * m) / denom;
  }
};

TEST(ClipSegments, RebasesAndDropsOutside) {
  const auto c = clip_segments(kSegments, 30, 60);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].offset, 0);
  EXPECT_EQ(c[0].numel, 10);
  EXPECT_TRUE(c[0].decay);
  EXPECT_EQ(c[1].offset, 10);
  EXPECT_EQ(c[1].numel, 13);
  EXPECT_FALSE(c[1].decay);
  EXPECT_EQ(c[2].offset, 23);
  EXPECT_EQ(c[2].numel, 7);
  EXPECT_TRUE(c[2].decay);
  EXPECT_NO_THROW(check_segments(c, 30));

  const auto inside = clip_segments(kSegments, 41, 45);  // within the norm gain
  ASSERT_EQ(inside.size(), 1u);
  EXPECT_EQ(inside[0].offset, 0);
  EXPECT_EQ(inside[0].numel, 4);
  EXPECT_FALSE(inside[0].decay);

  EXPECT_TRUE(clip_segments(kSegments, 77, 77).empty());
  EXPECT_EQ(clip_segments(kSegments, 0, kN).size(), 3u);
}

TEST(CheckSegments, RejectsGapsOverlapsAndShortCover) {
  EXPECT_NO_THROW(check_segments(kSegments, kN));
  EXPECT_THROW(check_segments(kSegments, kN + 1), StrataError);
  EXPECT_THROW(check_segments({{0, 10, true}, {11, 5, true}}, 16), StrataError);
  EXPECT_THROW(check_segments({{0, 10, true}, {9, 5, true}}, 14), StrataError);
}

TEST(AdamW, FirstStepByHand) {
  // Step 1: m^ = g, v^ = g^2, so p1 = p0 (1 - lr wd) - lr g / (|g| + eps).
  AdamW opt(1, {0.9f, 0.95f, 1e-8f, 0.1f});
  float p = 1.f;
  const float g = 0.5f;
  opt.step(&p, &g, 1, {{0, 1, true}}, 0.1f);
  EXPECT_NEAR(p, 0.99 - 0.1 * 0.5 / (0.5 + 1e-8), 1e-6);
  EXPECT_EQ(opt.steps(), 1);
}

void check_adamw_against_reference(const std::vector<DecaySegment>& segs) {
  const AdamWOptions o{0.9f, 0.95f, 1e-8f, 0.1f};
  AdamW opt(kN, o);
  std::vector<float> p = random_vec(kN, 1);
  std::vector<float> ref_p = p;
  std::vector<AdamWRef> ref(kN);
  const float lrs[3] = {1e-2f, 3e-3f, 5e-4f};
  for (int t = 1; t <= 3; ++t) {
    const std::vector<float> g = random_vec(kN, 100 + t, 0.1f);
    opt.step(p.data(), g.data(), kN, segs, lrs[t - 1]);
    for (int64_t i = 0; i < kN; ++i)
      ref[i].step(ref_p[i], g[i], lrs[t - 1], t, o, decays_at(segs, i));
    for (int64_t i = 0; i < kN; ++i) {
      // Same operations in the same order, each rounded once: bit-identical.
      EXPECT_EQ(p[i], ref_p[i]) << "step " << t << " element " << i;
      EXPECT_EQ(opt.state()[0].second->data()[i], ref[i].m);
      EXPECT_EQ(opt.state()[1].second->data()[i], ref[i].v);
    }
  }
  EXPECT_EQ(opt.steps(), 3);
}

TEST(AdamW, MatchesReferenceWithDecayEverywhere) { check_adamw_against_reference({{0, kN, true}}); }

TEST(AdamW, MatchesReferenceWithDecaySegments) { check_adamw_against_reference(kSegments); }

TEST(AdamW, NoDecayWhereSegmentSaysSo) {
  // Zero gradients make the Adam term exactly 0, leaving only the decoupled decay.
  AdamW opt(kN, {0.9f, 0.95f, 1e-8f, 0.1f});
  std::vector<float> p = random_vec(kN, 2);
  const std::vector<float> p0 = p;
  const std::vector<float> g(kN, 0.f);
  const float lr = 0.01f;
  for (int t = 0; t < 3; ++t) opt.step(p.data(), g.data(), kN, kSegments, lr);
  const float f = static_cast<float>(1.0 - 0.01 * 0.1f);
  for (int64_t i = 0; i < kN; ++i) {
    if (decays_at(kSegments, i))
      EXPECT_EQ(p[i], p0[i] * f * f * f) << i;
    else
      EXPECT_EQ(p[i], p0[i]) << i;
  }
}

TEST(AdamW, ShardedStepsEqualWholeBufferStep) {
  // ZeRO: two optimizers on [0, 30) and [30, 77) with clipped segments give bit-identical params.
  const int64_t cut = 30;
  const AdamWOptions o{0.9f, 0.95f, 1e-8f, 0.1f};
  AdamW whole(kN, o), lo(cut, o), hi(kN - cut, o);
  std::vector<float> p = random_vec(kN, 3);
  std::vector<float> q = p;
  for (int t = 1; t <= 3; ++t) {
    const std::vector<float> g = random_vec(kN, 200 + t);
    whole.step(p.data(), g.data(), kN, kSegments, 1e-2f);
    lo.step(q.data(), g.data(), cut, clip_segments(kSegments, 0, cut), 1e-2f);
    hi.step(q.data() + cut, g.data() + cut, kN - cut, clip_segments(kSegments, cut, kN), 1e-2f);
  }
  for (int64_t i = 0; i < kN; ++i) EXPECT_EQ(p[i], q[i]) << i;
}

TEST(AdamW, LargeBufferMatchesReferenceForOneAndTwoThreads) {
  // Big enough for the threaded path; odd sizes so chunks and vector tails are ragged.
  const std::vector<DecaySegment> segs = {
      {0, 70001, true}, {70001, 513, false}, {70514, 40009, true}};
  const int64_t n = 110523;
  const AdamWOptions o{0.9f, 0.95f, 1e-8f, 0.1f};
  const std::vector<float> p0 = random_vec(n, 7);
  std::vector<std::vector<float>> results;
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    AdamW opt(n, o);
    std::vector<float> p = p0;
    for (int t = 1; t <= 2; ++t) {
      const std::vector<float> g = random_vec(n, 400 + t, 0.1f);
      opt.step(p.data(), g.data(), n, segs, 1e-2f);
    }
    results.push_back(p);
  }
  omp_set_num_threads(saved);
  EXPECT_EQ(results[0], results[1]);

  std::vector<float> ref_p = p0;
  std::vector<AdamWRef> ref(n);
  for (int t = 1; t <= 2; ++t) {
    const std::vector<float> g = random_vec(n, 400 + t, 0.1f);
    for (int64_t i = 0; i < n; ++i) ref[i].step(ref_p[i], g[i], 1e-2f, t, o, decays_at(segs, i));
  }
  int64_t mismatches = 0;
  for (int64_t i = 0; i < n; ++i) mismatches += results[0][i] != ref_p[i];
  EXPECT_EQ(mismatches, 0);
}

TEST(AdamW, StateIsNamedSizedAndAccounted) {
  const int64_t before =
      MemoryTracker::instance().snapshot().current[static_cast<int>(MemCategory::optimizer)];
  {
    AdamW opt(1000, {});
    const auto st = opt.state();
    ASSERT_EQ(st.size(), 2u);
    EXPECT_EQ(st[0].first, "exp_avg");
    EXPECT_EQ(st[1].first, "exp_avg_sq");
    for (const auto& [name, buf] : st) {
      EXPECT_EQ(buf->size(), 1000) << name;
      EXPECT_EQ(buf->category(), MemCategory::optimizer) << name;
    }
    const int64_t during =
        MemoryTracker::instance().snapshot().current[static_cast<int>(MemCategory::optimizer)];
    EXPECT_EQ(during - before, 2 * 1000 * static_cast<int64_t>(sizeof(float)));
    opt.set_steps(41);
    EXPECT_EQ(opt.steps(), 41);
  }
}

TEST(AdamW, WrongSizeOrBadOptionsThrow) {
  AdamW opt(10, {});
  std::vector<float> p(11), g(11);
  EXPECT_THROW(opt.step(p.data(), g.data(), 11, {{0, 11, true}}, 1e-3f), StrataError);
  EXPECT_THROW(opt.step(p.data(), g.data(), 10, {}, 1e-3f), StrataError);  // no decay info
  EXPECT_THROW(opt.step(p.data(), g.data(), 10, {{0, 9, true}}, 1e-3f), StrataError);
  EXPECT_EQ(opt.steps(), 0);  // rejected steps do not count
  EXPECT_THROW(AdamW(10, AdamWOptions{1.f, 0.95f, 1e-8f, 0.f}), InputError);
  EXPECT_THROW(AdamW(10, AdamWOptions{0.9f, 0.95f, 0.f, 0.f}), InputError);
  EXPECT_THROW(SGD(10, SGDOptions{1.5f, 0.f}), InputError);
}

TEST(SGD, MomentumMatchesReference) {
  // torch.optim.SGD(momentum=0.9): buf = g on step 1, then buf = 0.9 buf + g; p -= lr buf.
  // Plus decoupled decay on decay segments.
  SGD opt(kN, {0.9f, 0.05f});
  std::vector<float> p = random_vec(kN, 4);
  std::vector<float> ref_p = p;
  std::vector<float> ref_buf(kN);
  const float lrs[3] = {0.1f, 0.05f, 0.01f};
  for (int t = 1; t <= 3; ++t) {
    const std::vector<float> g = random_vec(kN, 300 + t);
    const float lr = lrs[t - 1];
    opt.step(p.data(), g.data(), kN, kSegments, lr);
    for (int64_t i = 0; i < kN; ++i) {
      ref_buf[i] = t == 1 ? g[i] : ref_buf[i] * 0.9f + g[i];
      if (decays_at(kSegments, i)) ref_p[i] *= static_cast<float>(1.0 - lr * 0.05);
      ref_p[i] = ref_p[i] + (-lr) * ref_buf[i];
      EXPECT_EQ(p[i], ref_p[i]) << "step " << t << " element " << i;
      EXPECT_EQ(opt.state()[0].second->data()[i], ref_buf[i]);
    }
  }
  ASSERT_EQ(opt.state().size(), 1u);
  EXPECT_EQ(opt.state()[0].first, "momentum_buffer");
  EXPECT_EQ(opt.steps(), 3);
}

// Optimizer::set_bf16_copy: the step also leaves the bf16 copy of its updated parameters, the
// bits core/bf16.h's to_bf16 gives them (a NaN included), the parameters
// themselves untouched by it; and only that step: the next one, without a copy set, writes
// none. Both optimizers, a buffer past AdamW's parallel threshold with a tail, decay segments.
void expect_bf16_copy_follows(Optimizer& opt, int64_t n, const std::vector<DecaySegment>& segs) {
  std::vector<float> p = random_vec(n, 21);
  std::vector<float> g = random_vec(n, 22);
  p[5] = std::nanf("");  // stays NaN through the update
  std::vector<bf16> copy(static_cast<size_t>(n), bf16{0x1234});
  opt.set_bf16_copy(copy.data());
  opt.step(p.data(), g.data(), n, segs, 1e-3f);
  std::vector<bf16> want(static_cast<size_t>(n));
  to_bf16(p.data(), want.data(), n);
  EXPECT_EQ(copy, want);
  std::fill(copy.begin(), copy.end(), bf16{0x1234});
  opt.step(p.data(), g.data(), n, segs, 1e-3f);
  EXPECT_TRUE(std::all_of(copy.begin(), copy.end(), [](bf16 x) { return x == 0x1234; }));
}

TEST(Optimizer, Bf16CopyIsTheUpdatedParametersRounded) {
  const int64_t n = (1 << 16) + 7;  // AdamW's threads split it; 7 past the last full vector
  const std::vector<DecaySegment> segs = {
      {0, 40000, true}, {40000, 13, false}, {40013, n - 40013, true}};
  AdamW adamw(n, AdamWOptions{0.9f, 0.95f, 1e-8f, 0.1f});
  expect_bf16_copy_follows(adamw, n, segs);
  SGD sgd(n, SGDOptions{0.9f, 0.1f});
  expect_bf16_copy_follows(sgd, n, segs);
}

// The same parameters with and without a copy: writing it changes nothing else.
TEST(Optimizer, Bf16CopyLeavesTheUpdateAlone) {
  const int64_t n = (1 << 16) + 7;
  const std::vector<DecaySegment> segs = {{0, n, true}};
  AdamW with(n, AdamWOptions{}), without(n, AdamWOptions{});
  std::vector<float> p1 = random_vec(n, 31), p2 = p1;
  const std::vector<float> g = random_vec(n, 32);
  std::vector<bf16> copy(static_cast<size_t>(n));
  with.set_bf16_copy(copy.data());
  with.step(p1.data(), g.data(), n, segs, 1e-3f);
  without.step(p2.data(), g.data(), n, segs, 1e-3f);
  EXPECT_EQ(p1, p2);
}

// set_grads_to_clear: the step reads the gradients as it would (same parameters and state as a
// step without it, over a thread split, a segment boundary and a tail), leaves every one of them
// +0, and only for that step (the next one leaves its gradients alone).
void expect_grads_cleared(Optimizer& with, Optimizer& without, int64_t n,
                          const std::vector<DecaySegment>& segs) {
  std::vector<float> p1 = random_vec(n, 41), p2 = p1;
  std::vector<float> g = random_vec(n, 42);
  const std::vector<float> g_read = g;
  with.set_grads_to_clear(g.data());
  with.step(p1.data(), g.data(), n, segs, 1e-3f, 0.5f);
  without.step(p2.data(), g_read.data(), n, segs, 1e-3f, 0.5f);
  EXPECT_EQ(p1, p2);
  for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(g[i] == 0.f && !std::signbit(g[i])) << i;
  g = g_read;
  with.step(p1.data(), g.data(), n, segs, 1e-3f);
  without.step(p2.data(), g_read.data(), n, segs, 1e-3f);
  EXPECT_EQ(p1, p2);  // the state each carries is the same
  EXPECT_EQ(g, g_read);
}

TEST(Optimizer, GradientsToClearAreZeroedAsTheStepReadsThem) {
  const int64_t n = (1 << 16) + 7;
  const std::vector<DecaySegment> segs = {
      {0, 40000, true}, {40000, 13, false}, {40013, n - 40013, true}};
  AdamW a1(n, AdamWOptions{}), a2(n, AdamWOptions{});
  expect_grads_cleared(a1, a2, n, segs);
  SGD s1(n, SGDOptions{0.9f, 0.1f}), s2(n, SGDOptions{0.9f, 0.1f});
  expect_grads_cleared(s1, s2, n, segs);
}

TEST(SGD, TwoStepsByHand) {
  SGD opt(1, {0.9f, 0.f});
  float p = 1.f;
  float g = 1.f;
  opt.step(&p, &g, 1, {{0, 1, true}}, 0.1f);  // buf = 1, p = 0.9
  EXPECT_FLOAT_EQ(p, 0.9f);
  g = 2.f;
  opt.step(&p, &g, 1, {{0, 1, true}}, 0.1f);  // buf = 0.9 + 2 = 2.9, p = 0.9 - 0.29
  EXPECT_FLOAT_EQ(p, 0.61f);
}

TEST(MakeOptimizer, BuildsByNameAndRejectsUnknown) {
  OptimizerOptions o;
  o.weight_decay = 0.2f;
  auto a = make_optimizer("adamw", 8, o);
  ASSERT_NE(dynamic_cast<AdamW*>(a.get()), nullptr);
  EXPECT_EQ(dynamic_cast<AdamW*>(a.get())->options().weight_decay, 0.2f);
  auto s = make_optimizer("sgd", 8, o);
  ASSERT_NE(dynamic_cast<SGD*>(s.get()), nullptr);
  EXPECT_EQ(dynamic_cast<SGD*>(s.get())->options().momentum, o.momentum);
  try {
    make_optimizer("lion", 8, o);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("optim.name:", 0), 0u) << e.what();
    EXPECT_EQ(e.code(), ExitCode::bad_input);
  }
}

TEST(LrSchedule, CosineEndpointsAndMonotonicity) {
  const LrSchedule s{"cosine", 1e-3f, 1e-4f, 10, 100};
  EXPECT_NO_THROW(s.validate());
  EXPECT_FLOAT_EQ(s.at(0), 1e-4f);  // lr * 1/10
  EXPECT_FLOAT_EQ(s.at(4), 5e-4f);
  EXPECT_FLOAT_EQ(s.at(9), 1e-3f);
  EXPECT_FLOAT_EQ(s.at(10), 1e-3f);
  EXPECT_FLOAT_EQ(s.at(99), 1e-4f);
  EXPECT_FLOAT_EQ(s.at(150), 1e-4f);  // past the end: stays at min_lr
  // Halfway through the decay (step 10 + 89/2) the cosine is at the midpoint.
  const LrSchedule odd{"cosine", 1e-3f, 1e-4f, 10, 101};
  EXPECT_NEAR(odd.at(55), 5.5e-4, 1e-9);
  for (int64_t i = 1; i < 10; ++i) EXPECT_GT(s.at(i), s.at(i - 1)) << i;
  for (int64_t i = 11; i < 100; ++i) EXPECT_LT(s.at(i), s.at(i - 1)) << i;
}

TEST(LrSchedule, LinearAndConstant) {
  const LrSchedule lin{"linear", 1e-3f, 0.f, 0, 11};
  EXPECT_FLOAT_EQ(lin.at(0), 1e-3f);
  EXPECT_FLOAT_EQ(lin.at(5), 5e-4f);
  EXPECT_FLOAT_EQ(lin.at(10), 0.f);
  for (int64_t i = 1; i < 11; ++i) EXPECT_LT(lin.at(i), lin.at(i - 1)) << i;

  const LrSchedule con{"constant", 2e-3f, 1e-5f, 4, 50};
  EXPECT_FLOAT_EQ(con.at(0), 5e-4f);
  EXPECT_FLOAT_EQ(con.at(3), 2e-3f);
  EXPECT_FLOAT_EQ(con.at(49), 2e-3f);  // min_lr ignored

  // No room to decay: the step after warmup is already the last.
  const LrSchedule tight{"cosine", 1e-3f, 1e-4f, 5, 6};
  EXPECT_FLOAT_EQ(tight.at(4), 1e-3f);
  EXPECT_FLOAT_EQ(tight.at(5), 1e-4f);
}

TEST(LrSchedule, RejectsUnknownKind) {
  const LrSchedule s{"step", 1e-3f, 0.f, 0, 10};
  EXPECT_THROW(s.validate(), InputError);
  EXPECT_THROW(s.at(0), InputError);
  EXPECT_THROW((LrSchedule{"cosine", 1e-3f, 0.f, -1, 10}.validate()), InputError);
}

TEST(GradNorm, SumOfSquaresMatchesDoubleReference) {
  for (int64_t n : {0, 1, 7, 8, 9, 16385, 100003}) {
    const std::vector<float> g = random_vec(n, 5);
    double ref = 0;
    for (float x : g) ref += static_cast<double>(x) * x;
    EXPECT_NEAR(sum_of_squares(g.data(), n), ref, 1e-12 * (ref + 1)) << n;
  }
}

TEST(GradNorm, SumOfSquaresIsIdenticalForOneAndTwoThreads) {
  const int64_t n = 1'000'003;  // many blocks, plus a tail
  const std::vector<float> g = random_vec(n, 6);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one = sum_of_squares(g.data(), n);
  omp_set_num_threads(2);
  const double two = sum_of_squares(g.data(), n);
  omp_set_num_threads(saved);
  EXPECT_EQ(one, two);  // bitwise
  // And independent of where the data sits in memory (no alignment-dependent vector peeling).
  std::vector<float> shifted(n + 3);
  std::copy(g.begin(), g.end(), shifted.begin() + 3);
  EXPECT_EQ(sum_of_squares(shifted.data() + 3, n), one);
}

TEST(GradNorm, ScaleAndClipCoefficient) {
  std::vector<float> g = {3.f, 4.f, -1.f};
  scale(g.data(), 3, 0.5f);
  EXPECT_EQ(g, (std::vector<float>{1.5f, 2.f, -0.5f}));

  EXPECT_EQ(clip_coefficient(25.0, 0.f), 1.f);  // clipping off
  EXPECT_EQ(clip_coefficient(0.25, 1.f), 1.f);  // norm 0.5 <= 1: untouched
  EXPECT_EQ(clip_coefficient(0.0, 1.f), 1.f);
  EXPECT_TRUE(std::isnan(clip_coefficient(std::nan(""), 1.f)));  // a broken step stays visible
  EXPECT_EQ(clip_coefficient(INFINITY, 1.f), 0.f);
  EXPECT_FLOAT_EQ(clip_coefficient(100.0, 1.f), static_cast<float>(1.0 / (10.0 + 1e-6)));
  // Norm after clipping is max_norm (to the 1e-6 guard).
  std::vector<float> big = {30.f, 40.f};
  const float c = clip_coefficient(sum_of_squares(big.data(), 2), 5.f);
  scale(big.data(), 2, c);
  EXPECT_NEAR(std::sqrt(sum_of_squares(big.data(), 2)), 5.0, 1e-5);
}

TEST(Peak, MeasuresPositiveAndCaches) {
  EXPECT_GT(measure_sgemm_peak_gflops(128, 1), 0.0);
  const double a = cached_sgemm_peak_gflops();
  EXPECT_GT(a, 0.0);
  EXPECT_EQ(cached_sgemm_peak_gflops(), a);
}

// The clipping coefficient applied as the optimizer reads each gradient is the separate scaling
// pass it replaces, bit for bit: AdamW's vector body and scalar tail (n not a multiple of 16),
// and SGD.
TEST(Optimizers, GradScaleIsScalingTheGradientsFirst) {
  const int64_t n = 16 * 5 + 7;
  std::mt19937 gen(11);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> p0(n), g(n);
  for (int64_t i = 0; i < n; ++i)
    p0[static_cast<size_t>(i)] = nd(gen), g[static_cast<size_t>(i)] = nd(gen);
  const std::vector<DecaySegment> segs = {{0, 40, true}, {40, n - 40, false}};
  const float s = 0.3173f;
  std::vector<float> scaled = g;
  scale(scaled.data(), n, s);
  const AdamWOptions ao{0.9f, 0.95f, 1e-8f, 0.1f};
  AdamW fused(n, ao), separate(n, ao);
  std::vector<float> pf = p0, ps = p0;
  for (int t = 0; t < 3; ++t) {
    fused.step(pf.data(), g.data(), n, segs, 1e-2f, s);
    separate.step(ps.data(), scaled.data(), n, segs, 1e-2f);
  }
  EXPECT_EQ(pf, ps);
  EXPECT_NE(pf, p0);
  SGDOptions so;
  SGD sf(n, so), ss(n, so);
  pf = p0, ps = p0;
  for (int t = 0; t < 3; ++t) {
    sf.step(pf.data(), g.data(), n, segs, 1e-2f, s);
    ss.step(ps.data(), scaled.data(), n, segs, 1e-2f);
  }
  EXPECT_EQ(pf, ps);
}

}  // namespace
}  // namespace strata
