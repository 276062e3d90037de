// Row shards of a tensor (vocabulary parallelism): a shard holds exactly the rows of the whole
// tensor's numbers, its padding rows are zero and never reach a checkpoint, and shards written
// by several ranks read back as the whole tensor (and the whole tensor as shards).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "launch/checkpoint.h"
#include "launch/train_checkpoint.h"
#include "models/param_unit.h"

namespace strata {
namespace {

constexpr int64_t kRows = 10, kCols = 3, kShards = 4, kPerShard = 3;  // 10 rows padded to 12

ParamUnit whole() {
  ParamUnit u("w");
  u.add("model.embed_tokens.weight", {kRows, kCols}, 0.02f, true);
  u.allocate();
  u.init(7);
  return u;
}

ParamUnit shard(int64_t r) {
  ParamUnit u("w");
  u.add_row_shard("model.embed_tokens.weight", kRows, kCols, r * kPerShard, kPerShard, 0.02f,
                  true);
  u.allocate();
  u.init(7);
  return u;
}

TEST(RowShards, HoldTheWholeTensorsRowsAndZeroPadding) {
  const ParamUnit w = whole();
  for (int64_t r = 0; r < kShards; ++r) {
    const ParamUnit s = shard(r);
    const TensorSpec& t = s.tensors().front();
    EXPECT_EQ(t.stored_shape(), (std::vector<int64_t>{kRows, kCols}));
    for (int64_t i = 0; i < s.numel(); ++i) {
      const int64_t g = r * kPerShard * kCols + i;
      EXPECT_EQ(s.params().data()[i], g < kRows * kCols ? w.params().data()[g] : 0.f) << r << i;
    }
  }
  EXPECT_EQ(shard(3).tensors().front().valid, 1 * kCols);  // row 9 only; rows 10, 11 padding
}

TEST(RowShards, ShardsWrittenByFourRanksReadBackWhole) {
  char tmpl[] = "/tmp/strata_rowshards_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string root = tmpl;
  for (int r = 0; r < kShards; ++r) {
    const ParamUnit s = shard(r);
    write_shard(root, 1, r, unit_slices(s, s.params().data(), 0, s.numel()));
  }
  commit_checkpoint(root, 1, kShards, {}, "", 0);
  CheckpointReader ckpt(root);
  EXPECT_EQ(ckpt.numel("model.embed_tokens.weight"), kRows * kCols);  // no padding stored
  ParamUnit back("w");
  back.add("model.embed_tokens.weight", {kRows, kCols}, 0.02f, true);
  back.allocate();
  read_unit_range(ckpt, back, back.params().data(), 0, back.numel());
  const ParamUnit w = whole();
  EXPECT_EQ(std::vector<float>(back.params().data(), back.params().data() + back.numel()),
            std::vector<float>(w.params().data(), w.params().data() + w.numel()));
  // And a shard reads its rows from it, padding left at zero.
  ParamUnit s3("w");
  s3.add_row_shard("model.embed_tokens.weight", kRows, kCols, 9, kPerShard, 0.02f, true);
  s3.allocate();
  read_unit_range(ckpt, s3, s3.params().data(), 0, s3.numel());
  for (int64_t c = 0; c < kCols; ++c) EXPECT_EQ(s3.params().data()[c], w.params().data()[27 + c]);
  for (int64_t i = kCols; i < s3.numel(); ++i) EXPECT_EQ(s3.params().data()[i], 0.f);
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace strata
