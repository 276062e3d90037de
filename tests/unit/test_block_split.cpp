// The zero-bubble split of a block's backward: I (backward_input: dx and the norm gains, the
// weight GEMMs recorded) then W (backward_weight) must be the undeferred backward exactly, for
// both mixers; W of several micro-batches may run in any order; and I+W is the gradient.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/gemm.h"
#include "core/memory.h"
#include "model_test_util.h"
#include "models/block.h"
#include "models/deferred_grads.h"
#include "op_test_util.h"

using namespace strata;
using namespace strata::test;

namespace {

bool same_bits(const float* a, const float* b, int64_t n) {
  return std::memcmp(a, b, sizeof(float) * static_cast<size_t>(n)) == 0;
}

int64_t activation_bytes() {
  return MemoryTracker::instance().snapshot().current[static_cast<int>(MemCategory::activations)];
}

// One block of the tiny model with its mixer from layer_pattern, weights as test_block_grad
// prepares them: gains away from 1 and matrices 5x init, so every path is visible.
class BlockSplit : public ::testing::TestWithParam<char> {
 protected:
  BlockSplit()
      : cfg_(tiny_model(std::string(1, GetParam()), Decay::retnet, 4)),
        block_(cfg_, 0),
        unit_("layers.0") {
    prepare_block_unit(block_, unit_, 5.f);
  }

  int64_t nx() const { return s_.tokens() * cfg_.dim; }
  std::vector<float> input(uint32_t seed) const { return random_vector(size_t(nx()), seed); }
  // A gradient buffer as a step leaves it part way: earlier micro-batches already summed in.
  std::vector<float> dw_start() const { return random_vector(size_t(unit_.numel()), 5, 0.1f); }

  void forward(const std::vector<float>& x, SavedTensors& saved) const {
    std::vector<float> y(x.size());
    block_.forward(unit_, unit_.params().data(), x.data(), y.data(), s_, saved);
  }
  // The undeferred backward: dx out, gradients accumulated into dw.
  void backward(const std::vector<float>& x, const std::vector<float>& dy, std::vector<float>& dx,
                std::vector<float>& dw) const {
    SavedTensors saved;
    forward(x, saved);
    dx.assign(x.size(), 0.f);
    block_.backward(unit_, unit_.params().data(), dw.data(), saved, dy.data(), dx.data(), s_);
  }
  // I alone; then dy is overwritten as a caller would (its buffer goes to the next block).
  void backward_input(const std::vector<float>& x, std::vector<float> dy, std::vector<float>& dx,
                      std::vector<float>& dw, DeferredWeightGrads& deferred,
                      const Block::BackwardPoints* at = nullptr) const {
    SavedTensors saved;
    forward(x, saved);
    dx.assign(x.size(), 0.f);
    block_.backward_input(unit_, unit_.params().data(), dw.data(), saved, dy.data(), dx.data(), s_,
                          deferred, at);
    EXPECT_TRUE(saved.empty());
    std::fill(dy.begin(), dy.end(), std::numeric_limits<float>::quiet_NaN());
  }

  ModelConfig cfg_;
  Block block_;
  ParamUnit unit_;
  BlockShape s_{2, 13, 0};
};

TEST_P(BlockSplit, InputThenWeightIsBitIdenticalToBackward) {
  const auto x = input(11), dy = input(12);
  std::vector<float> dx_ref, dw_ref = dw_start();
  backward(x, dy, dx_ref, dw_ref);

  const int64_t before = activation_bytes();
  std::vector<float> dx, dw = dw_start();
  DeferredWeightGrads deferred;
  backward_input(x, dy, dx, dw, deferred);
  EXPECT_EQ(deferred.size(), 7);  // q, k, v, o, gate, up, down
  const std::vector<float> dx_after_i = dx;
  // What the caller does with dx before W runs: hands it on, overwritten.
  std::fill(dx.begin(), dx.end(), std::numeric_limits<float>::quiet_NaN());
  Block::backward_weight(deferred, dw.data());

  EXPECT_TRUE(deferred.empty());
  EXPECT_EQ(deferred.bytes(), 0);
  EXPECT_EQ(activation_bytes(), before);  // W released everything I kept
  EXPECT_TRUE(same_bits(dx_after_i.data(), dx_ref.data(), nx()));
  for (const auto& t : unit_.tensors())
    EXPECT_TRUE(same_bits(dw.data() + t.offset, dw_ref.data() + t.offset, t.numel)) << t.name;
}

TEST_P(BlockSplit, InputAloneWritesOnlyTheNormGains) {
  const auto x = input(11), dy = input(12);
  std::vector<float> dx_ref, dw_ref = dw_start();
  backward(x, dy, dx_ref, dw_ref);

  const std::vector<float> start = dw_start();
  std::vector<float> dx, dw = start;
  DeferredWeightGrads deferred;
  backward_input(x, dy, dx, dw, deferred);
  EXPECT_GT(deferred.bytes(), 0);
  EXPECT_FALSE(deferred.empty());
  int64_t gains = 0;
  for (const auto& t : unit_.tensors()) {
    const bool gain = t.init_std == 0.f;
    gains += gain;
    // A gain's gradient is complete after I; a matrix is untouched until W.
    const float* want = (gain ? dw_ref.data() : start.data()) + t.offset;
    EXPECT_TRUE(same_bits(dw.data() + t.offset, want, t.numel)) << t.name;
  }
  EXPECT_EQ(gains, GetParam() == 'L' ? 3 : 2);
  deferred.clear();
  EXPECT_EQ(deferred.bytes(), 0);
}

TEST_P(BlockSplit, WeightGradsOfTwoMicroBatchesRunInEitherOrder) {
  const auto x1 = input(21), dy1 = input(22), x2 = input(23), dy2 = input(24);
  std::vector<float> dx, dw_seq = dw_start();  // the undeferred backward, one after the other
  backward(x1, dy1, dx, dw_seq);
  backward(x2, dy2, dx, dw_seq);

  auto both_inputs_then = [&](bool swapped) {
    std::vector<float> dw = dw_start(), dxi;
    DeferredWeightGrads w1, w2;
    backward_input(x1, dy1, dxi, dw, w1);
    backward_input(x2, dy2, dxi, dw, w2);
    Block::backward_weight(swapped ? w2 : w1, dw.data());
    Block::backward_weight(swapped ? w1 : w2, dw.data());
    return dw;
  };
  const auto in_order = both_inputs_then(false), swapped = both_inputs_then(true);
  for (const auto& t : unit_.tensors()) {
    const auto slice = [&](const std::vector<float>& v) {
      return std::vector<float>(v.begin() + t.offset, v.begin() + t.offset + t.numel);
    };
    // In order, every sum is taken as the undeferred backward takes it.
    EXPECT_TRUE(same_bits(in_order.data() + t.offset, dw_seq.data() + t.offset, t.numel)) << t.name;
    // Swapped, only the order of two additions differs.
    EXPECT_LT(rel_err(slice(swapped), slice(in_order)), 1e-6) << t.name;
  }
}

TEST_P(BlockSplit, InputPlusWeightMatchesFiniteDifferences) {
  auto x = input(11);
  const auto R = input(12);
  auto loss = [&] {
    std::vector<float> y(x.size());
    SavedTensors saved;
    block_.forward(unit_, unit_.params().data(), x.data(), y.data(), s_, saved);
    double l = 0;
    for (size_t i = 0; i < y.size(); ++i) l += double(y[i]) * R[i];
    return l;
  };
  std::vector<float> dx, dw(size_t(unit_.numel()), 0.f);
  DeferredWeightGrads deferred;
  backward_input(x, R, dx, dw, deferred);
  Block::backward_weight(deferred, dw.data());

  const auto cx = directional_check(x.data(), dx.data(), nx(), 100, loss);
  EXPECT_LT(cx.rel_error(), 2e-3) << "input: analytic " << cx.analytic << " numeric " << cx.numeric;
  uint32_t seed = 200;
  for (const auto& t : unit_.tensors()) {
    const auto ct = directional_check(unit_.params().data() + t.offset, dw.data() + t.offset,
                                      t.numel, seed++, loss);
    EXPECT_LT(ct.rel_error(), 2e-3)
        << t.name << ": analytic " << ct.analytic << " numeric " << ct.numeric;
  }
}

TEST_P(BlockSplit, InputCallsTheBackwardPointsOnce) {
  int mlp = 0, attention = 0;
  const Block::BackwardPoints at{[&] { ++mlp; }, [&] { ++attention; }};
  std::vector<float> dx, dw(size_t(unit_.numel()), 0.f);
  DeferredWeightGrads deferred;
  backward_input(input(11), input(12), dx, dw, deferred, &at);
  EXPECT_EQ(mlp, 1);
  EXPECT_EQ(attention, 1);
}

INSTANTIATE_TEST_SUITE_P(Mixers, BlockSplit, ::testing::Values('L', 'S'),
                         [](const auto& info) { return std::string(1, info.param); });

TEST(DeferredWeightGrads, RunsTheRecordedGemmsInOrderThenHoldsNothing) {
  const int64_t M = 5, N = 3, K = 4;
  const auto dy = random_vector(size_t(M * N), 1), x = random_vector(size_t(M * K), 2);
  std::vector<float> want(size_t(2 * N * K), 0.5f);
  linear_backward_weight(dy.data(), x.data(), want.data(), M, N, K);
  linear_backward_weight(dy.data(), x.data(), want.data() + N * K, M, N, K);
  linear_backward_weight(dy.data(), x.data(), want.data() + N * K, M, N, K);

  DeferredWeightGrads d;
  EXPECT_TRUE(d.empty());
  const SharedBuffer sdy = DeferredWeightGrads::copy(dy.data(), M * N);
  const SharedBuffer sx = DeferredWeightGrads::copy(x.data(), M * K);
  d.record(sdy, sx, 0, M, N, K);
  d.record(sdy, sx, N * K, M, N, K);
  d.record(DeferredWeightGrads::copy(dy.data(), M * N), sx, N * K, M, N, K);
  // A buffer shared by several records is counted once.
  EXPECT_EQ(d.bytes(), 2 * sdy->capacity_bytes() + sx->capacity_bytes());
  DeferredWeightGrads moved(std::move(d));
  EXPECT_EQ(moved.size(), 3);
  std::vector<float> got(want.size(), 0.5f);
  moved.run(got.data());
  EXPECT_TRUE(moved.empty());
  EXPECT_EQ(sdy.use_count(), 1);  // released by run()
  EXPECT_TRUE(same_bits(got.data(), want.data(), int64_t(want.size())));
}

TEST(DeferredWeightGrads, RefusesAnInputShorterThanItsGemm) {
  DeferredWeightGrads d;
  const auto buf = DeferredWeightGrads::copy(std::vector<float>(6).data(), 6);
  EXPECT_THROW(d.record(buf, buf, 0, 3, 3, 2), std::exception);  // dY needs 9 floats
  EXPECT_TRUE(d.empty());
}

}  // namespace
