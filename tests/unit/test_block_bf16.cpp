// A block in the bf16 precision (models/gemm_ops.h) against the same block in fp32: the forward
// output, the input gradient and every weight gradient agree within a bf16 tolerance; the
// zero-bubble split I + W is the undeferred backward bit for bit in bf16 too; a run repeats bit
// for bit; the saved activations are about half the bytes (every [N, *] tensor halved); the
// bf16 weights follow the fp32 ones after a weights-epoch bump (core/weights_epoch.h); and every
// bf16 GEMM runs on oneDNN's brgemm kernels.
//
// Tolerance: every GEMM operand is rounded to bf16 (relative error <= 2^-9 each, so <= ~2^-8 per
// product), accumulated in fp32. A block chains a few such GEMMs (q/k/v, o, gate/up, down; twice
// as many backward) with fp32 norms between them, so the norm-wise relative error of an output
// is a small multiple of 2^-8 = 0.0039; the bounds below (2e-2 forward, 4e-2 gradients) leave a
// factor of about 2 over what is measured here, and an fp32 result differs from the fp32
// reference by ~1e-7 (so a GEMM left in fp32 could not be told apart by them, but a wrong
// operand - a stale weight, a transposed or misplaced tensor - is off by O(1)).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/dnnl_matmul.h"
#include "core/gemm_bf16.h"
#include "core/memory.h"
#include "core/weights_epoch.h"
#include "model_test_util.h"
#include "models/block.h"
#include "op_test_util.h"

using namespace strata;
using namespace strata::test;

namespace {

struct Result {
  std::vector<float> y, dx, dw;
  std::vector<float> delta;  // y - x: the block's own contribution (the residual left out)
  int64_t saved_bytes = 0;   // as held: each buffer padded to whole pages
  std::map<std::string, int64_t> logical;  // each saved tensor's own bytes, pages aside
};

class BlockBf16 : public ::testing::TestWithParam<char> {
 protected:
  ModelConfig config(Precision p) const {
    ModelConfig c = tiny_model(std::string(1, GetParam()), Decay::retnet, 4);
    c.precision = p;
    return c;
  }
  BlockBf16() : unit_("layers.0") { prepare_block_unit(Block(config(Precision::fp32), 0), unit_); }

  Result run(Precision p, bool split = false) const {
    const ModelConfig c = config(p);
    const Block block(c, 0);
    const int64_t n = s_.tokens() * c.dim;
    const std::vector<float> x = random_vector(size_t(n), 3), dy = random_vector(size_t(n), 4);
    Result r;
    r.y.resize(size_t(n));
    r.dx.resize(size_t(n));
    r.dw.assign(size_t(unit_.numel()), 0.f);
    SavedTensors saved;
    block.forward(unit_, unit_.params().data(), x.data(), r.y.data(), s_, saved);
    r.saved_bytes = saved.bytes();
    for (const auto& [name, buf] : saved.items()) r.logical[name] = buf->bytes();
    r.delta = r.y;
    for (int64_t i = 0; i < n; ++i) r.delta[size_t(i)] -= x[size_t(i)];
    if (split) {
      DeferredWeightGrads deferred;
      block.backward_input(unit_, unit_.params().data(), r.dw.data(), saved, dy.data(), r.dx.data(),
                           s_, deferred);
      Block::backward_weight(deferred, r.dw.data());
    } else {
      block.backward(unit_, unit_.params().data(), r.dw.data(), saved, dy.data(), r.dx.data(), s_);
    }
    return r;
  }

  ParamUnit unit_;
  BlockShape s_{2, 16, 0};
};

TEST_P(BlockBf16, AgreesWithFp32WithinTheBf16Tolerance) {
  const Result f = run(Precision::fp32), b = run(Precision::bf16);
  EXPECT_LE(rel_norm(b.y, f.y), 2e-2);
  EXPECT_LE(rel_norm(b.delta, f.delta), 4e-2);  // the block's own part, without the residual
  EXPECT_LE(rel_norm(b.dx, f.dx), 4e-2);
  EXPECT_LE(rel_norm(b.dw, f.dw), 4e-2);
  EXPECT_GT(rel_norm(b.dw, f.dw), 0);  // the GEMMs did run in bf16
  // Each weight tensor on its own, so a wrong one cannot hide in the norm of all.
  for (const auto& t : unit_.tensors()) {
    const std::vector<float> ft(f.dw.begin() + t.offset, f.dw.begin() + t.offset + t.numel),
        bt(b.dw.begin() + t.offset, b.dw.begin() + t.offset + t.numel);
    EXPECT_LE(rel_norm(bt, ft), 6e-2) << t.name;
  }
}

TEST_P(BlockBf16, SplitBackwardIsTheBackwardBitForBitAndRunsRepeat) {
  const Result b = run(Precision::bf16), again = run(Precision::bf16),
               split = run(Precision::bf16, true);
  for (const Result* r : {&again, &split}) {
    EXPECT_EQ(r->y, b.y);
    EXPECT_EQ(r->dx, b.dx);
    EXPECT_EQ(r->dw, b.dw);
  }
}

// What the forward saves, tensor by tensor: every [N, *] tensor at half the bytes in bf16 (the
// norms' rows xn1, xn2 and, in a linear mixer, u; act, gate, up; the linear mixer's qp, kp, v;
// the softmax mixer's q, k_all, v_all, o), the statistics and the linear state prefix in fp32
// at the same bytes, so the set as a whole is about half. Neither precision saves the residual
// stream (x, h1), the norms' outputs (a, m), nor a linear mixer's q, k and o: the backward forms
// what it needs of them again.
TEST_P(BlockBf16, SavedActivationsAreAboutHalfTheBytes) {
  const Result f = run(Precision::fp32), b = run(Precision::bf16);
  std::set<std::string> halved = {"xn1", "xn2", "act", "gate", "up"};
  if (GetParam() == 'L') halved.insert({"qp", "kp", "v", "u"});
  if (GetParam() == 'S') halved.insert({"q", "k_all", "v_all", "o"});
  ASSERT_EQ(f.logical.size(), b.logical.size());
  int64_t f_total = 0, b_total = 0;
  for (const auto& [name, bytes] : f.logical) {
    ASSERT_TRUE(b.logical.count(name)) << name;
    EXPECT_EQ(b.logical.at(name), halved.count(name) ? bytes / 2 : bytes) << name;
    f_total += bytes, b_total += b.logical.at(name);
  }
  for (const auto& name : halved) EXPECT_TRUE(f.logical.count(name)) << name;
  // The fp32 part is the per-row statistics (and a linear block's [B, H, dh, dh] prefix): a few
  // percent at this test's width (dim 32, 2 x 16 tokens), less at any real one.
  EXPECT_LE(static_cast<double>(b_total) / static_cast<double>(f_total), 0.56);
  for (const char* never : {"x", "h1", "a", "m"}) {
    EXPECT_FALSE(f.logical.count(never)) << never;
    EXPECT_FALSE(b.logical.count(never)) << never;
  }
  if (GetParam() == 'L') {
    for (const char* never : {"q", "k", "o"}) EXPECT_FALSE(f.logical.count(never)) << never;
  }
}

TEST_P(BlockBf16, TheBf16WeightsFollowAnUpdate) {
  const Result before = run(Precision::bf16);
  auto negate_matrices = [&] {  // an update no norm absorbs: every matrix changes sign
    for (const auto& t : unit_.tensors())
      if (t.init_std != 0.f)
        for (int64_t i = 0; i < t.numel; ++i) unit_.params()[t.offset + i] *= -1.f;
    bump_weights_epoch();  // what the optimizer step does after writing the parameters
  };
  negate_matrices();
  const Result after = run(Precision::bf16), after32 = run(Precision::fp32);
  EXPECT_LE(rel_norm(after.delta, after32.delta), 4e-2);  // the new weights, not the old copy
  EXPECT_GT(rel_norm(after.delta, before.delta), 0.1);    // a stale copy would be this far off
  negate_matrices();
  EXPECT_EQ(run(Precision::bf16).y, before.y);
}

// Every bf16 GEMM of a block, forward and backward (the batched attention products too), runs
// on oneDNN's brgemm kernels where the CPU runs bf16 natively: one on a layout they do not take
// falls to a reference or a non-AMX kernel several times slower, with the same results.
TEST_P(BlockBf16, EveryGemmRunsOnTheBf16Kernels) {
  if (!cpu_has_native_bf16()) GTEST_SKIP() << "no native bf16 on this CPU";
  run(Precision::bf16);
  run(Precision::bf16, true);
  const std::vector<std::string> impls = dnnl_matmul_bf16_impls();
  ASSERT_FALSE(impls.empty());
  for (const std::string& impl : impls) EXPECT_EQ(impl.rfind("brg:", 0), 0u) << impl;
}

INSTANTIATE_TEST_SUITE_P(Mixers, BlockBf16, ::testing::Values('L', 'S'),
                         [](const auto& info) { return std::string(1, info.param); });

}  // namespace
