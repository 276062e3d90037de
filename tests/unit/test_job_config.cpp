// The strict YAML job-file parser: values, defaults, --set overrides, dump round trip, and the
// exact shape of every error (file:line:col, key, did-you-mean).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "launch/job_config.h"

namespace strata {
namespace {

const char* kTiny = STRATA_SOURCE_DIR "/configs/tiny.yaml";

// Every field of two configs, so a round trip that loses any key fails here. `source` excepted.
void expect_same(const JobConfig& a, const JobConfig& b) {
  EXPECT_EQ(a.model.vocab_size, b.model.vocab_size);
  EXPECT_EQ(a.model.dim, b.model.dim);
  EXPECT_EQ(a.model.n_layers, b.model.n_layers);
  EXPECT_EQ(a.model.n_heads, b.model.n_heads);
  EXPECT_EQ(a.model.n_kv_heads, b.model.n_kv_heads);
  EXPECT_EQ(a.model.ffn_dim, b.model.ffn_dim);
  EXPECT_EQ(a.model.layer_pattern, b.model.layer_pattern);
  EXPECT_EQ(a.model.norm_eps, b.model.norm_eps);  // exact: floats must round-trip bit for bit
  EXPECT_EQ(a.model.rope_theta, b.model.rope_theta);
  EXPECT_EQ(a.model.feature_map, b.model.feature_map);
  EXPECT_EQ(a.model.decay, b.model.decay);
  EXPECT_EQ(a.model.chunk_size, b.model.chunk_size);
  EXPECT_EQ(a.model.tie_embeddings, b.model.tie_embeddings);
  EXPECT_EQ(a.data.train, b.data.train);
  EXPECT_EQ(a.data.val, b.data.val);
  EXPECT_EQ(a.data.seq_len, b.data.seq_len);
  EXPECT_EQ(a.train.steps, b.train.steps);
  EXPECT_EQ(a.train.global_batch, b.train.global_batch);
  EXPECT_EQ(a.train.micro_batch, b.train.micro_batch);
  EXPECT_EQ(a.train.seed, b.train.seed);
  EXPECT_EQ(a.train.eval_every, b.train.eval_every);
  EXPECT_EQ(a.train.eval_batches, b.train.eval_batches);
  EXPECT_EQ(a.train.run_dir, b.train.run_dir);
  EXPECT_EQ(a.train.threads, b.train.threads);
  EXPECT_EQ(a.optim.name, b.optim.name);
  EXPECT_EQ(a.optim.lr, b.optim.lr);
  EXPECT_EQ(a.optim.min_lr, b.optim.min_lr);
  EXPECT_EQ(a.optim.warmup_steps, b.optim.warmup_steps);
  EXPECT_EQ(a.optim.schedule, b.optim.schedule);
  EXPECT_EQ(a.optim.beta1, b.optim.beta1);
  EXPECT_EQ(a.optim.beta2, b.optim.beta2);
  EXPECT_EQ(a.optim.eps, b.optim.eps);
  EXPECT_EQ(a.optim.weight_decay, b.optim.weight_decay);
  EXPECT_EQ(a.optim.momentum, b.optim.momentum);
  EXPECT_EQ(a.optim.grad_clip, b.optim.grad_clip);
  EXPECT_EQ(a.parallel.dp, b.parallel.dp);
  EXPECT_EQ(a.parallel.sp, b.parallel.sp);
  EXPECT_EQ(a.parallel.pp, b.parallel.pp);
  EXPECT_EQ(a.parallel.zero_stage, b.parallel.zero_stage);
  EXPECT_EQ(a.parallel.schedule, b.parallel.schedule);
  EXPECT_EQ(a.parallel.virtual_stages, b.parallel.virtual_stages);
  EXPECT_EQ(a.parallel.schedule_file, b.parallel.schedule_file);
  EXPECT_EQ(a.parallel.pp_layers, b.parallel.pp_layers);
  EXPECT_EQ(a.offload.policy, b.offload.policy);
  EXPECT_EQ(a.checkpoint.dir, b.checkpoint.dir);
  EXPECT_EQ(a.checkpoint.every, b.checkpoint.every);
  EXPECT_EQ(a.checkpoint.keep_last, b.checkpoint.keep_last);
  EXPECT_EQ(a.checkpoint.resume, b.checkpoint.resume);
  EXPECT_EQ(a.log.every, b.log.every);
  EXPECT_EQ(a.log.metrics_file, b.log.metrics_file);
}

// The InputError message of parsing `yaml` (as "job.yaml"); fails the test when it parses.
std::string error_of(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    parse_job_config(yaml, "job.yaml", overrides);
  } catch (const InputError& e) {
    EXPECT_EQ(e.code(), ExitCode::bad_input);
    return e.what();
  }
  ADD_FAILURE() << "expected an InputError for:\n" << yaml;
  return "";
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "message: " << (haystack)

TEST(JobConfig, ParsesTinyYaml) {
  const JobConfig c = load_job_config(kTiny);
  EXPECT_EQ(c.source, kTiny);
  EXPECT_EQ(c.model.vocab_size, 256);
  EXPECT_EQ(c.model.dim, 128);
  EXPECT_EQ(c.model.n_layers, 4);
  EXPECT_EQ(c.model.n_heads, 4);
  EXPECT_EQ(c.model.n_kv_heads, 2);
  EXPECT_EQ(c.model.ffn_dim, 344);
  EXPECT_EQ(c.model.layer_pattern, "LLLS");
  EXPECT_EQ(c.model.feature_map, FeatureMap::silu);
  EXPECT_EQ(c.model.decay, Decay::retnet);
  EXPECT_EQ(c.model.chunk_size, 64);
  EXPECT_EQ(c.data.train, "data/fortunes/train");
  EXPECT_EQ(c.data.val, "data/fortunes/val");
  EXPECT_EQ(c.data.seq_len, 256);
  EXPECT_EQ(c.train.steps, 300);
  EXPECT_EQ(c.train.global_batch, 16);
  EXPECT_EQ(c.train.micro_batch, 8);
  EXPECT_EQ(c.train.seed, 1234u);
  EXPECT_EQ(c.train.eval_every, 100);
  EXPECT_EQ(c.train.eval_batches, 8);
  EXPECT_EQ(c.train.run_dir, "runs/tiny");
  EXPECT_EQ(c.optim.name, "adamw");
  EXPECT_EQ(c.optim.lr, 3.0e-3f);
  EXPECT_EQ(c.optim.min_lr, 3.0e-4f);
  EXPECT_EQ(c.optim.warmup_steps, 20);
  EXPECT_EQ(c.optim.schedule, "cosine");
  EXPECT_EQ(c.optim.weight_decay, 0.1f);
  EXPECT_EQ(c.optim.grad_clip, 1.0f);
  EXPECT_EQ(c.parallel.dp, 1);
  EXPECT_EQ(c.parallel.zero_stage, 0);
  EXPECT_EQ(c.offload.policy, "keep");
  EXPECT_EQ(c.checkpoint.every, 100);
  EXPECT_EQ(c.checkpoint.keep_last, 2);
  EXPECT_EQ(c.log.every, 10);
  // Keys the file leaves out keep the struct defaults.
  EXPECT_EQ(c.optim.beta1, 0.9f);
  EXPECT_EQ(c.optim.beta2, 0.95f);
  EXPECT_EQ(c.train.threads, 0);
  EXPECT_EQ(c.model.norm_eps, 1e-5f);
  EXPECT_EQ(c.checkpoint.resume, "auto");
  EXPECT_EQ(c.checkpoint.dir, "");
}

TEST(JobConfig, MissingSectionsAndKeysKeepDefaults) {
  const JobConfig c = parse_job_config("data:\n  train: shards\noffload:\n", "job.yaml");
  JobConfig expected;
  expected.data.train = "shards";
  expect_same(c, expected);
  EXPECT_EQ(c.source, "job.yaml");
}

TEST(JobConfig, AcceptsYamlNumberForms) {
  const JobConfig c = parse_job_config(
      "data: {train: x}\noptim:\n  lr: 1e-3\n  eps: +2.5E-9\n  beta1: .5\ntrain:\n  steps: +7\n"
      "  seed: 18446744073709551615\nmodel:\n  tie_embeddings: True\n",
      "job.yaml");
  EXPECT_EQ(c.optim.lr, 1e-3f);
  EXPECT_EQ(c.optim.eps, 2.5e-9f);
  EXPECT_EQ(c.optim.beta1, 0.5f);
  EXPECT_EQ(c.train.steps, 7);
  EXPECT_EQ(c.train.seed, std::numeric_limits<uint64_t>::max());
  EXPECT_TRUE(c.model.tie_embeddings);
}

TEST(JobConfig, DumpRoundTripsEveryField) {
  // Non-default values everywhere, including floats with no short decimal form and strings that
  // need quoting.
  const JobConfig c = load_job_config(kTiny, {"model.linear_attention.feature_map=identity",
                                              "model.linear_attention.decay=none",
                                              "model.tie_embeddings=true",
                                              "model.norm_eps=1.2345678e-6",
                                              "optim.lr=0.1234567891",
                                              "optim.name=sgd",
                                              "optim.schedule=linear",
                                              "optim.momentum=0.875",
                                              "train.seed=18446744073709551615",
                                              "data.val=",
                                              "train.run_dir='runs/a b: c #1'",
                                              "checkpoint.dir='null'",
                                              "log.metrics_file=\"-m\\\"x\\\\y\"",
                                              "checkpoint.resume=/ckpt/step_00000100",
                                              "offload.policy=recompute",
                                              "parallel.zero_stage=3",
                                              "train.threads=3",
                                              "parallel.pp=2",
                                              "parallel.schedule=interleaved",
                                              "parallel.virtual_stages=2",
                                              "parallel.pp_layers=[1, 2, 1]",
                                              "parallel.pp_layers=[1,1,1,1]",
                                              "parallel.schedule_file='my schedules/a.csv'"});
  EXPECT_EQ(c.parallel.pp_layers, (std::vector<int64_t>{1, 1, 1, 1}));
  EXPECT_EQ(c.parallel.schedule_file, "my schedules/a.csv");
  EXPECT_EQ(c.train.run_dir, "runs/a b: c #1");
  EXPECT_EQ(c.checkpoint.dir, "null");
  EXPECT_EQ(c.log.metrics_file, "-m\"x\\y");
  const std::string text = dump_job_config(c);
  const JobConfig back = parse_job_config(text, "dump.yaml");
  expect_same(c, back);
  // Past the header comment (which names the source), the dump is a fixed point.
  const std::string again = dump_job_config(back);
  EXPECT_EQ(again.substr(again.find('\n')), text.substr(text.find('\n')));
}

TEST(JobConfig, DumpHasEveryKeyInFileLayout) {
  JobConfig c;
  c.data.train = "x";
  const std::string text = dump_job_config(c);
  EXPECT_CONTAINS(text, "\nmodel:\n  vocab_size: 256\n");
  EXPECT_CONTAINS(text,
                  "  linear_attention:\n    feature_map: silu\n    decay: retnet\n"
                  "    chunk_size: 64\n  tie_embeddings: false\n");
  EXPECT_CONTAINS(text, "\ndata:\n  train: x\n  val: \"\"\n  seq_len: 128\n");
  EXPECT_CONTAINS(text, "\noptim:\n  name: adamw\n");
  EXPECT_CONTAINS(text,
                  "\nparallel:\n  dp: 1\n  sp: 1\n  pp: 1\n  zero_stage: 0\n  schedule: 1f1b\n"
                  "  virtual_stages: 1\n  schedule_file: \"\"\n  pp_layers: []\n");
  EXPECT_CONTAINS(text, "\ncheckpoint:\n  dir: \"\"\n");
  EXPECT_CONTAINS(text, "\nlog:\n  every: 1\n  metrics_file: \"\"\n");
  expect_same(parse_job_config(text, "dump.yaml"), c);
}

TEST(JobConfig, UnknownKeySuggestsTheClosest) {
  const std::string msg = error_of("data:\n  train: x\ntrain:\n  step: 5\n");
  EXPECT_CONTAINS(msg, "job.yaml:4:3: unknown key 'train.step' (did you mean 'steps'?)");
  EXPECT_CONTAINS(error_of("trian:\n  steps: 5\n"),
                  "job.yaml:1:1: unknown key 'trian' (did you mean 'train'?)");
  EXPECT_CONTAINS(
      error_of("model:\n  linear_attention:\n    decy: none\n"),
      "job.yaml:3:5: unknown key 'model.linear_attention.decy' (did you mean 'decay'?)");
  // A key under the wrong section points at where it lives.
  EXPECT_CONTAINS(error_of("train:\n  lr: 0.1\n"),
                  "job.yaml:2:3: unknown key 'train.lr' (did you mean 'optim.lr'?)");
  const std::string far = error_of("train:\n  banana: 1\n");
  EXPECT_CONTAINS(far, "job.yaml:2:3: unknown key 'train.banana'");
  EXPECT_EQ(far.find("did you mean"), std::string::npos) << far;
}

TEST(JobConfig, WrongTypeNamesKeyAndValue) {
  const std::string base = "data:\n  train: x\n";
  EXPECT_CONTAINS(error_of(base + "train:\n  steps: abc\n"),
                  "job.yaml:4:3: train.steps: expected an integer, got 'abc'");
  EXPECT_CONTAINS(error_of(base + "train:\n  steps: 1.5\n"),
                  "train.steps: expected an integer, got '1.5'");
  EXPECT_CONTAINS(error_of(base + "train:\n  steps:\n"),
                  "train.steps: expected an integer, got an empty value");
  EXPECT_CONTAINS(error_of(base + "train:\n  seed: -1\n"),
                  "train.seed: expected a non-negative integer, got '-1'");
  EXPECT_CONTAINS(error_of(base + "optim:\n  lr: fast\n"),
                  "job.yaml:4:3: optim.lr: expected a number, got 'fast'");
  EXPECT_CONTAINS(error_of(base + "optim:\n  lr: .inf\n"), "optim.lr: expected a number");
  EXPECT_CONTAINS(error_of(base + "optim:\n  lr: nan\n"), "optim.lr: expected a number");
  EXPECT_CONTAINS(error_of(base + "model:\n  tie_embeddings: yes\n"),
                  "model.tie_embeddings: expected true or false, got 'yes'");
  EXPECT_CONTAINS(error_of(base + "train:\n  run_dir: [a, b]\n"),
                  "train.run_dir: expected a string, got a sequence");
  EXPECT_CONTAINS(error_of(base + "optim:\n  name: adam\n"),
                  "job.yaml:4:3: optim.name: expected one of adamw|sgd, got 'adam' (did you mean "
                  "'adamw'?)");
  EXPECT_CONTAINS(error_of(base + "optim:\n  schedule: step\n"),
                  "optim.schedule: expected one of cosine|linear|constant, got 'step'");
  EXPECT_CONTAINS(error_of(base + "offload:\n  policy: swop\n"),
                  "offload.policy: expected one of keep|recompute|swap|auto, got 'swop'");
  EXPECT_CONTAINS(
      error_of(base + "offload:\n  policy: auto\n"),
      "job.yaml:4:3: offload.policy: auto needs a memory budget: set offload.budget_mb");
  EXPECT_CONTAINS(error_of(base + "offload:\n  budget_mb: -1\n"), "offload.budget_mb");
  EXPECT_CONTAINS(error_of(base + "model:\n  linear_attention:\n    feature_map: relu\n"),
                  "job.yaml:5:5: model.linear_attention.feature_map: expected one of "
                  "silu|identity, got 'relu'");
}

TEST(JobConfig, OutOfRangeNamesKeyAndValue) {
  struct Case {
    std::string path, value, expect;
  };
  const std::vector<Case> cases = {
      {"train.steps", "0", "expected a value >= 1, got 0"},
      {"train.global_batch", "0", "expected a value in [1, 2147483647], got 0"},
      {"train.micro_batch", "0", "expected a value in [1, 2147483647], got 0"},
      {"train.eval_every", "-1", "expected a value >= 0, got -1"},
      {"train.eval_batches", "0", "expected a value >= 1, got 0"},
      {"train.threads", "-2", "expected a value in [0, 1024], got -2"},
      {"train.threads", "100000", "expected a value in [0, 1024], got 100000"},
      {"data.seq_len", "0", "expected a value in [1, 16777216], got 0"},
      {"optim.lr", "-1", "expected a value > 0, got -1"},
      {"optim.lr", "0", "expected a value > 0, got 0"},
      {"optim.min_lr", "-1e-4", "expected a value >= 0, got -9.99999975e-05"},
      {"optim.warmup_steps", "-1", "expected a value >= 0, got -1"},
      {"optim.beta1", "1", "expected a value in [0, 1), got 1"},
      {"optim.beta2", "-0.5", "expected a value in [0, 1), got -0.5"},
      {"optim.eps", "0", "expected a value > 0, got 0"},
      {"optim.weight_decay", "-0.5", "expected a value >= 0, got -0.5"},
      {"optim.momentum", "1.5", "expected a value in [0, 1), got 1.5"},
      {"optim.grad_clip", "-1", "expected a value >= 0, got -1"},
      {"parallel.dp", "0", "expected a value in [1, 1048576], got 0"},
      // Issue 9: these were reported as dp=-1 and pp=-2147483648 (cast to int).
      {"parallel.dp", "9223372036854775807",
       "expected a value in [1, 1048576], got 9223372036854775807"},
      {"parallel.pp", "2147483648", "expected a value in [1, 1048576], got 2147483648"},
      {"parallel.sp", "0", "expected a value in [1, 1048576], got 0"},
      {"parallel.pp", "-1", "expected a value in [1, 1048576], got -1"},
      {"train.global_batch", "2147483648", "expected a value in [1, 2147483647], got 2147483648"},
      {"parallel.zero_stage", "4", "expected a value in [0, 3], got 4"},
      {"parallel.virtual_stages", "0", "expected a value in [1, 64], got 0"},
      {"parallel.virtual_stages", "65", "expected a value in [1, 64], got 65"},
      {"parallel.zero_stage", "-1", "expected a value in [0, 3], got -1"},
      {"checkpoint.every", "-1", "expected a value >= 0, got -1"},
      {"checkpoint.keep_last", "-1", "expected a value >= 0, got -1"},
      {"log.every", "0", "expected a value >= 1, got 0"},
  };
  for (const Case& c : cases) {
    const size_t dot = c.path.find('.');
    // data.train comes from --set so that the key under test is always on line 2 of the file.
    const std::string yaml =
        c.path.substr(0, dot) + ":\n  " + c.path.substr(dot + 1) + ": " + c.value + "\n";
    EXPECT_CONTAINS(error_of(yaml, {"data.train=x"}), "job.yaml:2:3: " + c.path + ": " + c.expect);
  }
}

TEST(JobConfig, GlobalBatchMustSplitIntoMicroBatchesPerRank) {
  const std::string msg =
      error_of("data: {train: x}\ntrain:\n  global_batch: 12\n  micro_batch: 8\n");
  EXPECT_CONTAINS(msg,
                  "job.yaml:3:3: train.global_batch: expected a multiple of "
                  "train.micro_batch * parallel.dp = 8 * 1 = 8, got 12");
  EXPECT_CONTAINS(error_of("data: {train: x}\ntrain:\n  global_batch: 16\n  micro_batch: 8\n"
                           "parallel:\n  dp: 4\n"),
                  "= 8 * 4 = 32, got 16");
  EXPECT_NO_THROW(
      parse_job_config("data: {train: x}\ntrain: {global_batch: 32, micro_batch: 4}\n"
                       "parallel: {dp: 4}\n",
                       "job.yaml"));
}

TEST(JobConfig, DataTrainIsRequired) {
  EXPECT_CONTAINS(error_of("train:\n  steps: 5\n"),
                  "job.yaml: data.train: expected the training token shards");
  EXPECT_CONTAINS(error_of("train:\n  steps: 5\ndata:\n  seq_len: 8\n"),
                  "job.yaml:3:1: data.train: expected the training token shards");
  EXPECT_CONTAINS(error_of("data:\n  train: \"\"\n"), "job.yaml:2:3: data.train: expected");
  EXPECT_CONTAINS(error_of("data: {train: x}\ncheckpoint:\n  resume: ''\n"),
                  "job.yaml:3:3: checkpoint.resume: expected auto, never or a checkpoint");
}

TEST(JobConfig, ModelValidationIsLocated) {
  const std::string base = "data:\n  train: x\n";
  EXPECT_CONTAINS(error_of(base + "model:\n  dim: 64\n  n_heads: 3\n"),
                  "job.yaml:5:3: model.n_heads: dim (64) must be divisible by n_heads (3)");
  // n_heads is not in the file: the model section's location stands in.
  EXPECT_CONTAINS(error_of(base + "model:\n  dim: 66\n"), "job.yaml:3:1: model.n_heads: dim (66)");
  EXPECT_CONTAINS(
      error_of(base + "model:\n  linear_attention:\n    chunk_size: 0\n"),
      "job.yaml:5:5: model.linear_attention.chunk_size: expected a value in [1, 65536], got 0");
  EXPECT_CONTAINS(error_of(base + "model:\n  layer_pattern: LSX\n"),
                  "job.yaml:4:3: model.layer_pattern: expected only 'L' and 'S', found 'X'");
  EXPECT_CONTAINS(error_of(base, {"model.n_kv_heads=3"}),
                  "--set model.n_kv_heads=3: expected a divisor of n_heads (4)");
}

// Issue 9: sizes whose products overflowed int64 (ffn_dim = 2^63 - 1 corrupted the heap,
// vocab_size = 2^63 - 1 crashed in init, ffn_dim = 2^62 reported 312832 parameters).
TEST(JobConfig, ModelSizesAreBoundedBeforeAnyProduct) {
  const std::string base = "data:\n  train: x\n";
  EXPECT_CONTAINS(error_of(base, {"model.ffn_dim=9223372036854775807"}),
                  "--set model.ffn_dim=9223372036854775807: expected a value in [1, 16777216], "
                  "got 9223372036854775807");
  EXPECT_CONTAINS(error_of(base, {"model.ffn_dim=4611686018427387904"}), "[1, 16777216]");
  EXPECT_CONTAINS(error_of(base, {"model.vocab_size=9223372036854775807"}),
                  "model.vocab_size=9223372036854775807: expected a value in [2, 2147483647]");
  EXPECT_CONTAINS(error_of(base, {"model.dim=100000000"}), "expected a value in [2, 1048576]");
  EXPECT_CONTAINS(error_of(base, {"model.n_layers=100000"}), "expected a value in [1, 65536]");
  EXPECT_CONTAINS(error_of(base, {"model.linear_attention.chunk_size=100000"}),
                  "expected a value in [1, 65536], got 100000");
  // Each within its bound, together past 2^48 parameters.
  EXPECT_CONTAINS(error_of(base, {"model.dim=1048576", "model.n_heads=4", "model.n_kv_heads=4",
                                  "model.ffn_dim=16777216", "model.n_layers=65536"}),
                  "more than the supported 2^48");
}

TEST(JobConfig, StructureErrors) {
  EXPECT_CONTAINS(error_of("- model\n- data\n"),
                  "job.yaml:1:1: expected a map of sections (model, data, train, ...) at the top "
                  "level, got a sequence");
  EXPECT_CONTAINS(error_of("hello\n"), "job.yaml:1:1: expected a map of sections");
  EXPECT_CONTAINS(error_of("data: {train: x}\ntrain: 5\n"),
                  "job.yaml:2:1: train: expected a map of keys, got '5'");
  EXPECT_CONTAINS(error_of("data: {train: x}\nmodel:\n  linear_attention: silu\n"),
                  "job.yaml:3:3: model.linear_attention: expected a map of keys, got 'silu'");
  EXPECT_CONTAINS(error_of("data: {train: x}\n? [a, b]\n: 1\n"),
                  "expected a key name, got a sequence");
  EXPECT_CONTAINS(error_of("data: {train: x}\n---\ntrain: {steps: 1}\n"),
                  "job.yaml:3:1: expected one YAML document, found 2");
}

TEST(JobConfig, SyntaxErrorIsLocated) {
  EXPECT_CONTAINS(error_of("data:\n  train: [a, b\ntrain:\n  steps: 1\n"),
                  "job.yaml:3:6: YAML syntax error: end of sequence flow not found");
  EXPECT_CONTAINS(error_of("train:\n  steps: 1: 2\n"), "job.yaml:2:11: YAML syntax error: ");
}

TEST(JobConfig, DuplicateKeysAreErrors) {
  EXPECT_CONTAINS(error_of("data: {train: x}\ntrain:\n  steps: 5\n  steps: 6\n"),
                  "job.yaml:4:3: duplicate key 'train.steps' (first set at line 3)");
  EXPECT_CONTAINS(error_of("data: {train: x}\ntrain:\n  steps: 5\ntrain:\n  seed: 6\n"),
                  "job.yaml:4:1: duplicate key 'train' (first set at line 2)");
}

TEST(JobConfig, OverridesApplyAfterTheFile) {
  const JobConfig c = load_job_config(
      kTiny, {"train.steps=5", "model.linear_attention.decay=none", "optim.lr=1e-4",
              "data.val=", "train.steps=7", "parallel.dp=2", "train.eval_every = 3"});
  EXPECT_EQ(c.train.steps, 7);  // the last --set wins
  EXPECT_EQ(c.model.decay, Decay::none);
  EXPECT_EQ(c.optim.lr, 1e-4f);
  EXPECT_EQ(c.data.val, "");
  EXPECT_EQ(c.parallel.dp, 2);
  EXPECT_EQ(c.train.eval_every, 3);                // spaces around '=' are allowed
  EXPECT_EQ(c.data.train, "data/fortunes/train");  // untouched keys keep the file's values
}

TEST(JobConfig, OverrideErrors) {
  const std::string base = "data:\n  train: x\n";
  EXPECT_CONTAINS(error_of(base, {"train.step=5"}),
                  "--set train.step=5: unknown key 'train.step' (did you mean 'train.steps'?)");
  EXPECT_CONTAINS(error_of(base, {"model.feature_map=identity"}),
                  "--set model.feature_map=identity: unknown key 'model.feature_map' (did you "
                  "mean 'model.linear_attention.feature_map'?)");
  EXPECT_CONTAINS(error_of(base, {"train.steps=abc"}),
                  "--set train.steps=abc: expected an integer, got 'abc'");
  EXPECT_CONTAINS(error_of(base, {"train.steps={a: 1}"}),
                  "--set train.steps={a: 1}: expected an integer, got a map");
  EXPECT_CONTAINS(error_of(base, {"optim.lr=-1"}),
                  "--set optim.lr=-1: expected a value > 0, got -1");
  EXPECT_CONTAINS(error_of(base, {"train.steps"}), "--set train.steps: expected section.key=value");
  EXPECT_CONTAINS(error_of(base, {"model=5"}), "--set model=5: 'model' is a section");
  EXPECT_CONTAINS(error_of(base, {"train.run_dir=[a"}),
                  "--set train.run_dir=[a: invalid YAML value");
  // A range error on a key the file set points at the file, even when --set changed another key.
  EXPECT_CONTAINS(
      error_of(base + "train:\n  global_batch: 16\n  micro_batch: 8\n", {"parallel.dp=4"}),
      "job.yaml:4:3: train.global_batch: expected a multiple");
}

TEST(JobConfig, LoadErrorsNameThePath) {
  const std::string missing = "/nonexistent/dir/job.yaml";
  try {
    load_job_config(missing);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_CONTAINS(e.what(), "cannot read job file '" + missing + "'");
    EXPECT_CONTAINS(e.what(), "No such file");
  }
  const std::string dir = std::filesystem::temp_directory_path().string();
  try {
    load_job_config(dir);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_CONTAINS(e.what(), "'" + dir + "': it is a directory");
  }
}

TEST(JobConfig, LoadNamesTheFileInErrors) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("strata_job_config_" + std::to_string(::getpid()) + ".yaml");
  std::ofstream(path) << "data:\n  train: x\noptim:\n  lr: -1\n";
  try {
    load_job_config(path.string());
    ADD_FAILURE() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_CONTAINS(e.what(), path.string() + ":4:3: optim.lr: expected a value > 0, got -1");
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace strata

// Every shipped example job file parses (and so stays in step with the parser).
TEST(JobConfigExamples, EveryConfigInConfigsParses) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(STRATA_SOURCE_DIR "/configs")) {
    if (e.path().extension() != ".yaml") continue;
    EXPECT_NO_THROW(strata::load_job_config(e.path().string())) << e.path();
    ++n;
  }
  EXPECT_GE(n, 2);
}

namespace strata {
namespace {

std::string test_error_of(const std::string& yaml) {
  try {
    parse_job_config(yaml, "job.yaml");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

// Issue 9: strings name files. A NUL byte silently cut a path, invalid UTF-8 trained until the
// first save, a 10 MB value made a 10 MB message, and CR-only line endings read as one comment.
TEST(JobConfigStrings, NulByteIsRefused) {
  const std::string m = test_error_of("data:\n  train: \"runs/a\\0b\"\n");
  EXPECT_NE(m.find("job.yaml:2:3: data.train: expected text without NUL bytes, got one at byte 6"),
            std::string::npos)
      << m;
}

TEST(JobConfigStrings, InvalidUtf8IsRefused) {
  const std::string m = test_error_of("data:\n  train: x\ntrain:\n  run_dir: runs/\xff\n");
  EXPECT_NE(m.find("job.yaml:4:3: train.run_dir: expected UTF-8 text, got the invalid byte 0xff "
                   "at byte 5"),
            std::string::npos)
      << m;
  // Overlong, surrogate and truncated sequences too; real UTF-8 passes.
  for (const char* bad : {"\xc0\xaf", "\xed\xa0\x80", "\xe2\x82", "\xf5\x80\x80\x80"})
    EXPECT_NE(test_error_of(std::string("data:\n  train: \"a") + bad + "\"\n").find("UTF-8"),
              std::string::npos);
  EXPECT_EQ(test_error_of("data:\n  train: \"d\xc3\xa9j\xc3\xa0/\xe2\x82\xac/\xf0\x9f\x98\x80\"\n"),
            "");
}

TEST(JobConfigStrings, LongValuesAreRefusedWithAShortMessage) {
  const std::string huge(10 << 20, 'a');
  const std::string m = test_error_of("data:\n  train: x\ntrain:\n  run_dir: " + huge + "\n");
  EXPECT_NE(m.find("train.run_dir: expected at most 4096 bytes, got 'aaaa"), std::string::npos);
  EXPECT_NE(m.find("...' (10485760 bytes)"), std::string::npos);
  EXPECT_LT(m.size(), 400u);
  // A long key (an explicit one: yaml-cpp refuses implicit keys past 1024 bytes) and a --set.
  const std::string k = test_error_of("data:\n  train: x\n? " + huge + "\n: 1\n");
  EXPECT_NE(k.find("unknown key 'aaaa"), std::string::npos) << k.substr(0, 200);
  EXPECT_LT(k.size(), 400u);
  std::string flag_error;
  try {
    parse_job_config("data:\n  train: x\n", "job.yaml", {"train.run_dir=" + huge});
  } catch (const InputError& e) {
    flag_error = e.what();
  }
  EXPECT_NE(flag_error.find("expected at most 4096 bytes"), std::string::npos);
  EXPECT_LT(flag_error.size(), 400u);
}

TEST(JobConfigStrings, CarriageReturnOnlyLineEndingsAreLineBreaks) {
  const JobConfig c =
      parse_job_config("# comment\rdata:\r  train: x\rtrain:\r  steps: 7\r", "job.yaml");
  EXPECT_EQ(c.train.steps, 7);
  EXPECT_EQ(c.data.train, "x");
  EXPECT_NE(test_error_of("data:\r  train: x\rtrain:\r  stepz: 7\r").find("job.yaml:4:3: unknown"),
            std::string::npos);
  const JobConfig crlf = parse_job_config("data:\r\n  train: x\r\n", "job.yaml");
  EXPECT_EQ(crlf.data.train, "x");
}

}  // namespace
}  // namespace strata

// The pipeline keys (docs/JOB_FILE.md, parallel): types, the rules tying them to parallel.pp
// and model.n_layers, and where their errors point.
namespace strata {
namespace {

// Eight blocks: room for pp=4 with two virtual stages.
const std::string kEightBlocks = "data: {train: x}\nmodel:\n  n_layers: 8\n";

std::string pipeline_error(const std::string& parallel_yaml,
                           const std::vector<std::string>& overrides = {}) {
  try {
    parse_job_config(kEightBlocks + "parallel:\n" + parallel_yaml, "job.yaml", overrides);
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an InputError for:\n" << parallel_yaml;
  return "";
}

TEST(JobConfigPipeline, DefaultsAreOneStagePerRankOneFOneB) {
  const JobConfig c = parse_job_config("data: {train: x}\n", "job.yaml");
  EXPECT_EQ(c.parallel.schedule, "1f1b");
  EXPECT_EQ(c.parallel.virtual_stages, 1);
  EXPECT_EQ(c.parallel.schedule_file, "");
  EXPECT_TRUE(c.parallel.pp_layers.empty());
}

TEST(JobConfigPipeline, PpLayersReadsBlockAndFlowSequencesAndSet) {
  const JobConfig block = parse_job_config(
      kEightBlocks + "parallel:\n  pp: 3\n  pp_layers:\n    - 2\n    - 3\n    - 3\n", "job.yaml");
  EXPECT_EQ(block.parallel.pp_layers, (std::vector<int64_t>{2, 3, 3}));
  const JobConfig set =
      parse_job_config(kEightBlocks, "job.yaml", {"parallel.pp=3", "parallel.pp_layers=[4,2,2]"});
  EXPECT_EQ(set.parallel.pp_layers, (std::vector<int64_t>{4, 2, 2}));
  // An empty value, or [], is "placed by cost".
  const JobConfig empty =
      parse_job_config(kEightBlocks, "job.yaml", {"parallel.pp_layers=[1]", "parallel.pp_layers="});
  EXPECT_TRUE(empty.parallel.pp_layers.empty());
  EXPECT_TRUE(parse_job_config(kEightBlocks + "parallel:\n  pp_layers: []\n", "job.yaml")
                  .parallel.pp_layers.empty());
}

TEST(JobConfigPipeline, PpLayersTypeErrorsNameTheEntry) {
  EXPECT_CONTAINS(pipeline_error("  pp_layers: 8\n"),
                  "job.yaml:5:3: parallel.pp_layers: expected a sequence of integers (e.g. [2, 1, "
                  "1]), got '8'");
  EXPECT_CONTAINS(pipeline_error("  pp: 2\n  pp_layers: [4, x]\n"),
                  "job.yaml:6:3: parallel.pp_layers: entry 1: expected an integer, got 'x'");
  EXPECT_CONTAINS(
      pipeline_error("  pp_layers: {a: 1}\n"),
      "parallel.pp_layers: expected a sequence of integers (e.g. [2, 1, 1]), got a map");
  EXPECT_CONTAINS(
      pipeline_error("", {"parallel.pp_layers=[[1], 2]"}),
      "--set parallel.pp_layers=[[1], 2]: entry 0: expected an integer, got a sequence");
}

TEST(JobConfigPipeline, PpLayersMustCoverEveryStageAndBlock) {
  EXPECT_CONTAINS(pipeline_error("  pp: 4\n  pp_layers: [2, 1, 1]\n"),
                  "job.yaml:6:3: parallel.pp_layers: expected parallel.pp * "
                  "parallel.virtual_stages = 4 * 1 = 4 entries (blocks per stage), got 3");
  EXPECT_CONTAINS(pipeline_error("  pp: 2\n  schedule: interleaved\n  virtual_stages: 2\n"
                                 "  pp_layers: [2, 2, 2]\n"),
                  "= 2 * 2 = 4 entries (blocks per stage), got 3");
  EXPECT_CONTAINS(pipeline_error("  pp: 3\n  pp_layers: [4, 0, 4]\n"),
                  "job.yaml:6:3: parallel.pp_layers: entry 1 is 0: every stage holds at least one "
                  "block");
  EXPECT_CONTAINS(pipeline_error("  pp: 3\n  pp_layers: [2, 2, 3]\n"),
                  "job.yaml:6:3: parallel.pp_layers: the entries sum to 7 blocks, but "
                  "model.n_layers = 8");
  EXPECT_CONTAINS(pipeline_error("", {"parallel.pp=2", "parallel.pp_layers=[5,5]"}),
                  "--set parallel.pp_layers=[5,5]: the entries sum to 10 blocks, but "
                  "model.n_layers = 8");
}

TEST(JobConfigPipeline, ScheduleIsOneOfTheGenerators) {
  for (const char* name : {"gpipe", "1f1b", "zb-h1"})
    EXPECT_EQ(parse_job_config(kEightBlocks, "job.yaml", {std::string("parallel.schedule=") + name})
                  .parallel.schedule,
              name);
  EXPECT_CONTAINS(pipeline_error("  schedule: 1f1c\n"),
                  "job.yaml:5:3: parallel.schedule: expected one of gpipe|1f1b|interleaved|zb-h1, "
                  "got '1f1c' (did you mean '1f1b'?)");
}

TEST(JobConfigPipeline, VirtualStagesMatchTheSchedule) {
  EXPECT_CONTAINS(pipeline_error("  pp: 2\n  schedule: interleaved\n"),
                  "job.yaml:4:1: parallel.virtual_stages: parallel.schedule interleaved needs "
                  "parallel.virtual_stages >= 2 (stages per pipeline rank), got 1");
  EXPECT_CONTAINS(pipeline_error("  pp: 2\n  virtual_stages: 2\n"),
                  "job.yaml:6:3: parallel.virtual_stages: parallel.schedule 1f1b holds one stage "
                  "per pipeline rank: parallel.virtual_stages must be 1, got 2");
  EXPECT_CONTAINS(pipeline_error("  schedule: zb-h1\n", {"parallel.virtual_stages=3"}),
                  "--set parallel.virtual_stages=3: parallel.schedule zb-h1 holds one stage");
  const JobConfig ok = parse_job_config(
      kEightBlocks + "parallel:\n  pp: 2\n  schedule: interleaved\n  virtual_stages: 4\n",
      "job.yaml");
  EXPECT_EQ(ok.parallel.virtual_stages, 4);
  // A schedule file brings its own placement: the schedule key is not consulted.
  EXPECT_NO_THROW(parse_job_config(
      kEightBlocks + "parallel:\n  schedule: interleaved\n  schedule_file: s.csv\n", "job.yaml"));
}

TEST(JobConfigPipeline, EveryStageNeedsABlock) {
  EXPECT_CONTAINS(pipeline_error("  pp: 4\n  schedule: interleaved\n  virtual_stages: 3\n"),
                  "parallel.pp: parallel.pp * parallel.virtual_stages = 4 * 3 = 12 stages, more "
                  "than model.n_layers = 8 (every stage holds at least one block)");
  EXPECT_CONTAINS(pipeline_error("  pp: 9\n"),
                  "job.yaml:5:3: parallel.pp: parallel.pp * parallel.virtual_stages = 9 * 1 = 9 "
                  "stages, more than model.n_layers = 8");
  EXPECT_NO_THROW(parse_job_config(kEightBlocks + "parallel:\n  pp: 8\n", "job.yaml"));
}

}  // namespace
}  // namespace strata
