#include "launch/prepare_data.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "launch/data.h"

namespace strata {

namespace fs = std::filesystem;

namespace {

constexpr size_t kBinarySniffBytes = 8192;

// An input file as found, before de-duplication and content checks.
struct Candidate {
  fs::path path;
  bool symlink = false;
};

// Accumulates one split's token stream and cuts it into shards of `shard_tokens`.
class ShardStream {
 public:
  ShardStream(fs::path dir, std::string split, int64_t shard_tokens, int version)
      : dir_(std::move(dir)),
        split_(std::move(split)),
        shard_tokens_(shard_tokens),
        version_(version) {}

  void append_document(std::string_view bytes) {
    if (bytes.empty()) return;
    append(std::string_view("\0", 1));  // kDocumentSeparator
    append(bytes);
  }

  void finish() {
    if (!buffer_.empty()) flush();
  }

  int64_t tokens() const { return tokens_; }
  const std::vector<std::string>& paths() const { return paths_; }

 private:
  void append(std::string_view bytes) {
    while (!bytes.empty()) {
      const size_t room = static_cast<size_t>(shard_tokens_) - buffer_.size();
      const size_t n = std::min(room, bytes.size());
      for (size_t i = 0; i < n; ++i) buffer_.push_back(static_cast<unsigned char>(bytes[i]));
      bytes.remove_prefix(n);
      tokens_ += static_cast<int64_t>(n);
      if (buffer_.size() == static_cast<size_t>(shard_tokens_)) flush();
    }
  }

  void flush() {
    char name[64];
    std::snprintf(name, sizeof(name), "%s_%06zu.bin", split_.c_str(), paths_.size());
    paths_.push_back((dir_ / name).string());
    write_token_shard(paths_.back(), buffer_, version_);
    buffer_.clear();
  }

  fs::path dir_;
  std::string split_;
  int64_t shard_tokens_;
  int version_;
  int64_t tokens_ = 0;
  std::vector<int32_t> buffer_;
  std::vector<std::string> paths_;
};

void validate_options(const PrepareDataOptions& o) {
  if (o.inputs.empty())
    throw InputError("prepare-data: no inputs given (expected files or directories of text)");
  if (o.output_dir.empty()) throw InputError("prepare-data: no output directory given");
  if (!(o.val_fraction >= 0.0 && o.val_fraction < 1.0))
    throw InputError("prepare-data: val_fraction " + std::to_string(o.val_fraction) +
                     " is out of range (expected 0 <= val_fraction < 1)");
  if (o.shard_tokens <= 0)
    throw InputError("prepare-data: shard_tokens " + std::to_string(o.shard_tokens) +
                     " is out of range (expected > 0)");
  if (shard_token_width(o.version) == 0)
    throw InputError("prepare-data: version " + std::to_string(o.version) +
                     " is not supported (expected 1 = uint16 tokens or 2 = uint32 tokens)");
}

// The regular files under a directory, sorted by path so the corpus order is deterministic.
// Symlinked directories are not followed (no loops); symlinked files are, and marked as such.
std::vector<Candidate> files_under(const fs::path& dir) {
  std::vector<Candidate> found;
  try {
    for (const auto& entry : fs::recursive_directory_iterator(dir)) {
      std::error_code ec;
      if (entry.is_regular_file(ec)) found.push_back({entry.path(), entry.is_symlink(ec)});
    }
  } catch (const fs::filesystem_error& e) {
    throw InputError("prepare-data: cannot list '" + dir.string() + "': " + e.code().message());
  }
  std::sort(found.begin(), found.end(), [](const Candidate& a, const Candidate& b) {
    return a.path.native() < b.path.native();
  });
  return found;
}

std::vector<Candidate> expand_inputs(const std::vector<std::string>& inputs,
                                     PrepareDataSummary& summary) {
  std::vector<Candidate> found;
  for (const auto& input : inputs) {
    std::error_code ec;
    const auto st = fs::status(input, ec);
    if (!fs::exists(st))
      throw InputError("prepare-data: input '" + input +
                       "' does not exist (expected a text file or a directory)");
    if (fs::is_directory(st)) {
      auto files = files_under(input);
      found.insert(found.end(), files.begin(), files.end());
    } else if (fs::is_regular_file(st)) {
      found.push_back({input, fs::is_symlink(input, ec)});
    } else {
      summary.skipped.push_back(input + " (not a regular file)");
    }
  }
  return found;
}

// Drops *.dat index files and second names of one file (symlinks such as fortune's *.u8, or an
// input listed twice). A file's real name wins over a symlink to it wherever either sorts.
std::vector<fs::path> select_files(const std::vector<Candidate>& found,
                                   PrepareDataSummary& summary) {
  auto canonical = [](const fs::path& p) {
    std::error_code ec;
    auto c = fs::canonical(p, ec);
    return ec ? p : c;
  };
  std::set<fs::path> real_names;
  for (const auto& c : found)
    if (!c.symlink) real_names.insert(canonical(c.path));
  std::set<fs::path> taken;
  std::vector<fs::path> selected;
  for (const auto& c : found) {
    const fs::path canon = canonical(c.path);
    if (c.path.extension() == ".dat") {
      summary.skipped.push_back(c.path.string() + " (.dat index file)");
    } else if (c.symlink && real_names.count(canon) != 0) {
      summary.skipped.push_back(c.path.string() + " (symlink to a file already included)");
    } else if (!taken.insert(canon).second) {
      summary.skipped.push_back(c.path.string() + " (already included)");
    } else {
      selected.push_back(c.path);
    }
  }
  return selected;
}

std::string read_file(const fs::path& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  std::ifstream in(path, std::ios::binary);
  if (ec || !in) throw InputError("prepare-data: cannot read '" + path.string() + "'");
  std::string bytes(size, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  if (in.gcount() != static_cast<std::streamsize>(size))
    throw InputError("prepare-data: cannot read '" + path.string() + "': expected " +
                     std::to_string(size) + " bytes, got " + std::to_string(in.gcount()));
  return bytes;
}

// Why a document is not text, or "" when it is. A NUL after the first 8 KiB also disqualifies
// the file: it would be indistinguishable from the document separator.
std::string binary_reason(std::string_view doc) {
  const size_t nul = doc.find('\0');
  if (nul == std::string_view::npos) return "";
  if (nul < kBinarySniffBytes) return "binary: NUL byte in the first 8 KiB";
  return "binary: NUL byte at offset " + std::to_string(nul);
}

// Shards named <split>_NNNNNN.bin beyond the ones just written would be picked up by the data
// spec of this directory and silently mix an earlier corpus into this one.
int64_t remove_stale_shards(const fs::path& dir, const std::string& split, size_t written) {
  int64_t removed = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const std::string head = split + "_";
    if (name.size() != head.size() + 10 || name.rfind(head, 0) != 0 ||
        entry.path().extension() != ".bin")
      continue;
    const std::string digits = name.substr(head.size(), 6);
    if (!std::all_of(digits.begin(), digits.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
      continue;
    if (std::stoul(digits) >= written && fs::remove(entry.path(), ec)) ++removed;
  }
  return removed;
}

}  // namespace

std::vector<int32_t> encode_bytes(std::string_view text) {
  std::vector<int32_t> tokens(text.size());
  std::transform(text.begin(), text.end(), tokens.begin(),
                 [](char ch) { return static_cast<int32_t>(static_cast<unsigned char>(ch)); });
  return tokens;
}

std::string decode_tokens(std::span<const int32_t> tokens) {
  std::string text(tokens.size(), '?');
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] >= 0 && tokens[i] < kByteVocabSize) text[i] = static_cast<char>(tokens[i]);
  return text;
}

PrepareDataSummary prepare_data(const PrepareDataOptions& options) {
  validate_options(options);
  PrepareDataSummary summary;
  const auto files = select_files(expand_inputs(options.inputs, summary), summary);

  const fs::path out = options.output_dir;
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec || !fs::is_directory(out))
    throw InputError("prepare-data: cannot create output directory '" + out.string() +
                     "': " + (ec ? ec.message() : "a file of that name exists"));

  ShardStream train(out, "train", options.shard_tokens, options.version);
  ShardStream val(out, "val", options.shard_tokens, options.version);
  for (const auto& path : files) {
    const std::string doc = read_file(path);
    std::string why = doc.empty() ? "empty" : binary_reason(doc);
    if (!why.empty()) {
      summary.skipped.push_back(path.string() + " (" + why + ")");
      continue;
    }
    const auto size = static_cast<int64_t>(doc.size());
    const auto n_val =
        static_cast<int64_t>(std::floor(static_cast<double>(size) * options.val_fraction));
    const std::string_view view = doc;
    train.append_document(view.substr(0, static_cast<size_t>(size - n_val)));
    val.append_document(view.substr(static_cast<size_t>(size - n_val)));
    summary.documents.push_back(path.string());
  }
  if (summary.documents.empty())
    throw InputError("prepare-data: no text files found in the inputs (" +
                     std::to_string(summary.skipped.size()) +
                     " skipped as binary, *.dat, empty or duplicate)");
  train.finish();
  val.finish();

  summary.files = static_cast<int64_t>(summary.documents.size());
  summary.skipped_files = static_cast<int64_t>(summary.skipped.size());
  summary.train_tokens = train.tokens();
  summary.val_tokens = val.tokens();
  summary.train_shards = train.paths();
  summary.val_shards = val.paths();
  summary.removed_stale_shards = remove_stale_shards(out, "train", train.paths().size()) +
                                 remove_stale_shards(out, "val", val.paths().size());
  return summary;
}

}  // namespace strata
