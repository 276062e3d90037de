#include "launch/tokenizer_info.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"

namespace strata {

namespace fs = std::filesystem;

void write_tokenizer_info(const std::string& dir, const TokenizerInfo& info) {
  std::string text = "# strata prepare-data: the tokenizer of the token shards in this directory\n";
  text += "kind: " + info.kind + "\n";
  if (!info.model.empty()) text += "model: " + info.model + "\n";
  text += "vocab_size: " + std::to_string(info.vocab_size) + "\n";
  text += "separator: " + std::to_string(info.separator) + "\n";
  write_file_atomic((fs::path(dir) / kTokenizerInfoFile).string(), text);
}

std::optional<TokenizerInfo> read_tokenizer_info(const std::string& dir) {
  const std::string path = (fs::path(dir) / kTokenizerInfoFile).string();
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::nullopt;
  TokenizerInfo info;
  std::string key = "kind";
  try {
    const YAML::Node root = YAML::LoadFile(path);
    info.kind = root["kind"].as<std::string>();
    key = "vocab_size";
    info.vocab_size = root["vocab_size"].as<int64_t>();
    key = "separator";
    info.separator = root["separator"].as<int32_t>();
    key = "model";
    if (root["model"]) info.model = root["model"].as<std::string>();
  } catch (const YAML::Exception& e) {
    throw InputError(path + ": key '" + key + "': " + e.what() +
                     " (expected the file strata prepare-data writes)");
  }
  if (info.kind != "byte" && info.kind != "sentencepiece")
    throw InputError(path + ": key 'kind': expected byte or sentencepiece, got '" + info.kind +
                     "'");
  return info;
}

void check_tokenizer_vocab(const std::vector<std::string>& shards, int64_t vocab_size) {
  std::set<std::string> dirs;
  for (const auto& s : shards) dirs.insert(fs::path(s).parent_path().string());
  for (const auto& dir : dirs) {
    const auto info = read_tokenizer_info(dir.empty() ? "." : dir);
    if (!info || info->kind != "sentencepiece" || info->vocab_size == vocab_size) continue;
    throw InputError("model.vocab_size is " + std::to_string(vocab_size) +
                     " but the tokenizer of the data in '" + (dir.empty() ? "." : dir) + "' (" +
                     (fs::path(dir) / kTokenizerInfoFile).string() + ", " + info->model +
                     ") has vocab_size " + std::to_string(info->vocab_size) +
                     ": set model.vocab_size: " + std::to_string(info->vocab_size));
  }
}

}  // namespace strata
