#include <gtest/gtest.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>

#include "core/error.h"
#include "input_error_util.h"
#include "models/safetensors.h"

namespace strata {
namespace {

namespace fs = std::filesystem;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("strata_st_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// Builds a file by hand: as another tool would write it.
std::string make_file(const std::string& header, const std::string& data) {
  const uint64_t n = header.size();
  return std::string(reinterpret_cast<const char*>(&n), 8) + header + data;
}

using test::expect_input_error;

float from_bits(uint32_t u) { return std::bit_cast<float>(u); }

TEST_F(SafetensorsTest, F32RoundTripIsBitExact) {
  std::vector<float> a(3 * 5), b(7), scalar{-2.5f};
  for (size_t i = 0; i < a.size(); ++i) a[i] = std::sin(0.37f * i) * 1e3f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = 1e-40f * (i + 1);  // subnormals survive too
  b[3] = std::numeric_limits<float>::infinity();
  const std::vector<SafeTensor> tensors = {
      {"layers.0.attn.wq", {3, 5}, a.data()},
      {"b", {7}, b.data()},
      {"scalar", {}, scalar.data()},
      {"empty", {0, 4}, nullptr},
  };
  const std::string file = path("m.safetensors");
  export_safetensors(file, tensors, {{"format", "pt"}});
  EXPECT_FALSE(fs::exists(file + ".tmp"));

  const SafetensorsFile f = load_safetensors(file);
  ASSERT_EQ(f.tensors.size(), 4u);
  EXPECT_EQ(f.tensors[0].name, "layers.0.attn.wq");  // file order is export order
  EXPECT_EQ(f.metadata.at("format"), "pt");
  for (const SafeTensor& t : tensors) {
    const LoadedTensor* l = f.find(t.name);
    ASSERT_NE(l, nullptr) << t.name;
    EXPECT_EQ(l->shape, t.shape);
    EXPECT_EQ(l->dtype, "F32");
    if (!l->data.empty()) {
      EXPECT_EQ(std::memcmp(l->data.data(), t.data, l->data.size() * 4), 0) << t.name;
    }
  }
  EXPECT_EQ(f.find("scalar")->data.size(), 1u);
  EXPECT_TRUE(f.find("empty")->data.empty());
  EXPECT_EQ(f.find("missing"), nullptr);
}

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(fp32_to_bf16(from_bits(0x3F807FFF)), 0x3F80);              // below half: down
  EXPECT_EQ(fp32_to_bf16(from_bits(0x3F808000)), 0x3F80);              // tie, even below: down
  EXPECT_EQ(fp32_to_bf16(from_bits(0x3F808001)), 0x3F81);              // above half: up
  EXPECT_EQ(fp32_to_bf16(from_bits(0x3F818000)), 0x3F82);              // tie, even above: up
  EXPECT_EQ(fp32_to_bf16(from_bits(0xBF818000)), 0xBF82);              // sign-symmetric
  EXPECT_EQ(fp32_to_bf16(from_bits(0x3F80FFFF)), 0x3F81);              // carry into the mantissa
  EXPECT_EQ(fp32_to_bf16(from_bits(0x3FFFFFFF)), 0x4000);              // carry into the exponent
  EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::max()), 0x7F80);  // overflows to +inf
  EXPECT_EQ(fp32_to_bf16(-std::numeric_limits<float>::infinity()), 0xFF80);
  const uint16_t nan = fp32_to_bf16(from_bits(0x7F800001));  // would round to inf if not caught
  EXPECT_TRUE(std::isnan(bf16_to_fp32(nan)));
  EXPECT_EQ(bf16_to_fp32(0x3F81), from_bits(0x3F810000));
}

TEST_F(SafetensorsTest, Bf16RoundTripWithinRounding) {
  std::vector<float> x(1000);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.1f * i) * std::exp(0.01f * i);
  x[0] = from_bits(0x3F808000);
  x[1] = from_bits(0x3F818000);
  const std::string file = path("bf16.safetensors");
  export_safetensors(file, {{"x", {10, 100}, x.data()}}, {}, SafetensorsDType::BF16);
  const SafetensorsFile f = load_safetensors(file);
  ASSERT_EQ(f.tensors.size(), 1u);
  EXPECT_EQ(f.tensors[0].dtype, "BF16");
  ASSERT_EQ(f.tensors[0].data.size(), x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const float y = f.tensors[0].data[i];
    EXPECT_EQ(y, bf16_to_fp32(fp32_to_bf16(x[i]))) << i;
    EXPECT_LE(std::fabs(y - x[i]), std::fabs(x[i]) * (1.0f / 256)) << i;  // 8 mantissa bits
  }
  EXPECT_EQ(f.tensors[0].data[0], 1.0f);
  EXPECT_EQ(f.tensors[0].data[1], from_bits(0x3F820000));
}

TEST_F(SafetensorsTest, MetadataWithEscapesRoundTrips) {
  const std::map<std::string, std::string> meta = {
      {"strata_config", R"({"model": {"dim": 64, "name": "a \"quoted\" \\ path"}, "s": "x\ny"})"},
      {"control", "tab\there\r\nbell\x07 unit-sep\x1f back\b feed\f"},
      {"unicode", "h\xC3\xA9llo \xE2\x9C\x93 \xF0\x9F\x98\x80"},
      {"key \"with\" quotes\\", ""},
  };
  float v = 1.f;
  const std::string file = path("meta.safetensors");
  export_safetensors(file, {{"name \"odd\"\n", {1}, &v}}, meta);
  const SafetensorsFile f = load_safetensors(file);
  EXPECT_EQ(f.metadata, meta);
  ASSERT_EQ(f.tensors.size(), 1u);
  EXPECT_EQ(f.tensors[0].name, "name \"odd\"\n");
}

TEST_F(SafetensorsTest, HeaderIsJsonWithExpectedKeys) {
  std::vector<float> a(6, 1.f), b(4, 2.f);
  const std::string config = R"({"dim": 64, "q": "\"x\"\\"})";
  const std::string control = "line\n\ttab\x01\x1f\r";
  const std::string file = path("h.safetensors");
  export_safetensors(file, {{"a", {2, 3}, a.data()}, {"b", {4}, b.data()}},
                     {{"strata_config", config}, {"control", control}}, SafetensorsDType::BF16);
  const std::string bytes = read_bytes(file);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);  // data starts 8-byte aligned
  EXPECT_EQ(bytes.size(), 8 + n + (6 + 4) * 2);
  // An independent parser (yaml-cpp reads JSON) sees what other tools will see.
  const YAML::Node h = YAML::Load(bytes.substr(8, n));
  ASSERT_TRUE(h.IsMap());
  EXPECT_EQ(h.size(), 3u);
  EXPECT_EQ(h["a"]["dtype"].as<std::string>(), "BF16");
  EXPECT_EQ(h["a"]["shape"].as<std::vector<int64_t>>(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(h["a"]["data_offsets"].as<std::vector<int64_t>>(), (std::vector<int64_t>{0, 12}));
  EXPECT_EQ(h["b"]["data_offsets"].as<std::vector<int64_t>>(), (std::vector<int64_t>{12, 20}));
  EXPECT_EQ(h["__metadata__"]["strata_config"].as<std::string>(), config);
  EXPECT_EQ(h["__metadata__"]["control"].as<std::string>(), control);
  // The config value is itself JSON again once unescaped.
  EXPECT_EQ(YAML::Load(config)["q"].as<std::string>(), "\"x\"\\");
}

TEST_F(SafetensorsTest, ReadsForeignFileWithF16AndJsonEscapes) {
  // Spacing, key order, escapes and F16 as another writer might produce them.
  const std::string header =
      " { \"__metadata__\" : { \"k\\u00e9y\" : \"a\\/b \\ud83d\\ude00\" } ,\n"
      "   \"h\" : { \"shape\" : [ 2, 2 ], \"data_offsets\" : [0, 8], \"dtype\" : \"F16\" } }  ";
  const uint16_t halfs[4] = {0x3C00, 0xC000, 0x3800, 0x0001};  // 1, -2, 0.5, 2^-24
  const std::string file = path("foreign.safetensors");
  write_bytes(file, make_file(header, std::string(reinterpret_cast<const char*>(halfs), 8)));
  const SafetensorsFile f = load_safetensors(file);
  EXPECT_EQ(f.metadata.at("k\xC3\xA9y"), "a/b \xF0\x9F\x98\x80");
  ASSERT_EQ(f.tensors.size(), 1u);
  EXPECT_EQ(f.tensors[0].dtype, "F16");
  EXPECT_EQ(f.tensors[0].data, (std::vector<float>{1.f, -2.f, 0.5f, std::ldexp(1.f, -24)}));
}

TEST_F(SafetensorsTest, CorruptFilesAreRefused) {
  const std::string file = path("bad.safetensors");
  const std::string data(16, '\0');
  auto expect_bad = [&](const std::string& bytes, const std::string& needle) {
    write_bytes(file, bytes);
    expect_input_error([&] { load_safetensors(file); }, needle);
    expect_input_error([&] { load_safetensors(file); }, file);
  };
  const std::string good = R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  write_bytes(file, make_file(good, data));
  EXPECT_EQ(load_safetensors(file).tensors.at(0).data.size(), 4u);  // the baseline is valid

  expect_bad("abc", "shorter");
  std::string huge = make_file(good, data);
  huge[5] = 1;  // header length ~ 2^40
  expect_bad(huge, "header length");
  expect_bad(make_file(good.substr(0, good.size() - 1), data), "JSON");
  expect_bad(make_file("[1, 2]", data), "object");
  expect_bad(make_file(R"({"t":{"dtype":"Q32","shape":[4],"data_offsets":[0,16]}})", data),
             "unknown dtype 'Q32'");
  expect_bad(make_file(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,32]}})", data),
             "out of range");
  expect_bad(make_file(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", data),
             "need 12");
  expect_bad(make_file(R"({"t":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", data),
             "non-negative");
  expect_bad(make_file(R"({"t":{"dtype":"F32","shape":[4]}})", data), "data_offsets");
  expect_bad(make_file(R"({"__metadata__":{"k":1}})", data), "expected a string");
  expect_bad(make_file(R"({"a":"\q"})", data), "bad escape");
  expect_bad(make_file(std::string(100, '[') + std::string(100, ']'), data), "deeply");
  expect_input_error([&] { load_safetensors(path("missing.safetensors")); }, "missing");
}

TEST_F(SafetensorsTest, ExportReplacesExistingFileAtomically) {
  const std::string file = path("r.safetensors");
  float one = 1.f, two = 2.f;
  export_safetensors(file, {{"x", {1}, &one}}, {});
  export_safetensors(file, {{"x", {1}, &two}}, {});
  EXPECT_EQ(load_safetensors(file).tensors.at(0).data.at(0), 2.f);
  EXPECT_FALSE(fs::exists(file + ".tmp"));
  EXPECT_THROW(export_safetensors(file, {{"x", {1}, &one}, {"x", {1}, &two}}, {}), StrataError);
  EXPECT_EQ(load_safetensors(file).tensors.at(0).data.at(0), 2.f);  // untouched on failure
}

}  // namespace
}  // namespace strata
