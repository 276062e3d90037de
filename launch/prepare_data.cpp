#include "launch/prepare_data.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/atomic_file.h"
#include "core/clock.h"
#include "core/error.h"
#include "launch/data.h"
#include "launch/prepare_text.h"
#include "launch/tokenizer_info.h"

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
  ShardStream(fs::path dir, std::string split, int64_t shard_tokens, int version, int32_t separator)
      : dir_(std::move(dir)),
        split_(std::move(split)),
        shard_tokens_(shard_tokens),
        version_(version),
        separator_(separator) {}

  void append_document(std::span<const int32_t> tokens) {
    if (tokens.empty()) return;
    append(std::span<const int32_t>(&separator_, 1));
    append(tokens);
  }

  void finish() {
    if (!buffer_.empty()) flush();
  }

  int64_t tokens() const { return tokens_; }
  const std::vector<std::string>& paths() const { return paths_; }

 private:
  void append(std::span<const int32_t> tokens) {
    while (!tokens.empty()) {
      const size_t room = static_cast<size_t>(shard_tokens_) - buffer_.size();
      const size_t n = std::min(room, tokens.size());
      buffer_.insert(buffer_.end(), tokens.begin(), tokens.begin() + static_cast<ptrdiff_t>(n));
      tokens = tokens.subspan(n);
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
  int32_t separator_;
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
  if (o.version != 0 && o.version != 1 && o.version != kLlama3ShardVersion)
    throw InputError("prepare-data: version " + std::to_string(o.version) +
                     " is not supported (expected 1 = uint16 tokens, llm.c's GPT-2 layout, or 7 = "
                     "uint32 tokens, llm.c's Llama-3 layout; version 2 is read, not written)");
  if (o.train_tokenizer && o.tokenizer != "byte")
    throw InputError(
        "prepare-data: --train-tokenizer trains a new SentencePiece model; it "
        "cannot be combined with --tokenizer " +
        o.tokenizer);
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

// The first bytes of a document that go to train: size - floor(size * val_fraction), moved back
// to a character boundary for SentencePiece (bytes are bytes to the byte-level tokenizer).
size_t train_bytes(std::string_view doc, double val_fraction, const Tokenizer& tok) {
  const auto n_val =
      static_cast<size_t>(std::floor(static_cast<double>(doc.size()) * val_fraction));
  const size_t cut = doc.size() - n_val;
  return tok.byte_level() ? cut : utf8_boundary(doc, cut);
}

// Text of the train splits to train a tokenizer on: from every document its first lines, in
// proportion to its size, `budget` bytes in all.
std::vector<std::string> training_lines(const std::vector<fs::path>& files,
                                        const PrepareDataOptions& o) {
  int64_t total = 0;
  std::error_code ec;
  for (const auto& f : files) total += static_cast<int64_t>(fs::file_size(f, ec));
  std::vector<std::string> lines;
  for (const auto& f : files) {
    const std::string doc = read_file(f);
    if (doc.empty() || !binary_reason(doc).empty()) continue;  // skipped in the main pass too
    const double share = total > o.train_tokenizer_bytes
                             ? static_cast<double>(o.train_tokenizer_bytes) / total
                             : 1.0;
    const std::string_view train = std::string_view(doc).substr(
        0, static_cast<size_t>(static_cast<double>(doc.size()) * (1.0 - o.val_fraction)));
    take_lines(train, static_cast<int64_t>(std::ceil(share * static_cast<double>(doc.size()))),
               lines);
  }
  return lines;
}

struct TokenizerChoice {
  std::unique_ptr<Tokenizer> tokenizer;  // nullptr until a trained model is stored
  std::string trained;                   // the serialised trained model
  std::string model_file;                // in the output directory; "" for bytes
};

// The tokenizer, opened or trained, before anything is written (a refused model leaves no
// output directory behind).
TokenizerChoice choose_tokenizer(const PrepareDataOptions& o, const std::vector<fs::path>& files) {
  if (!o.train_tokenizer) {
    auto tok = open_tokenizer(o.tokenizer);
    const bool bytes = tok->byte_level();
    return {std::move(tok), "", bytes ? "" : "tokenizer.model"};
  }
  const std::vector<std::string> lines = training_lines(files, o);
  if (o.progress)
    std::fprintf(stderr, "prepare-data: training a %s tokenizer of %lld pieces on %zu lines\n",
                 o.training.model_type.c_str(), static_cast<long long>(o.training.vocab_size),
                 lines.size());
  return {nullptr, train_sentencepiece(lines, o.training), "tokenizer.model"};
}

// A SentencePiece model goes into the output directory as tokenizer.model, so the shards carry
// what made them.
void store_tokenizer(TokenizerChoice& tok, const PrepareDataOptions& o, const fs::path& out) {
  if (tok.model_file.empty()) return;
  const fs::path model = out / tok.model_file;
  if (!tok.tokenizer) {
    write_file_atomic(model.string(), tok.trained);
    tok.tokenizer = load_sentencepiece(model.string());
    return;
  }
  const fs::path given = o.tokenizer.substr(4);
  std::error_code ec;
  if (fs::equivalent(given, model, ec)) return;
  fs::copy_file(given, model, fs::copy_options::overwrite_existing, ec);
  if (ec)
    throw InputError("prepare-data: cannot copy " + given.string() + " to " + model.string() +
                     ": " + ec.message());
}

// Progress lines on stderr, at most one a second, for inputs that take that long.
class Progress {
 public:
  Progress(bool on, const std::vector<fs::path>& files) : on_(on), files_(files.size()) {
    std::error_code ec;
    for (const auto& f : files) total_ += static_cast<int64_t>(fs::file_size(f, ec));
  }
  void add(int64_t bytes, int64_t tokens) {
    ++done_;
    bytes_ += bytes;
    if (on_ && seconds_since(last_) >= 1.0) print(tokens);
  }
  void finish(int64_t tokens) {
    if (on_ && seconds_since(start_) >= 1.0) print(tokens);
  }

 private:
  void print(int64_t tokens) {
    last_ = Clock::now();
    const double mb = 1e-6 * static_cast<double>(bytes_), s = std::max(1e-9, seconds_since(start_));
    std::fprintf(
        stderr, "prepare-data: %zu/%zu files, %.1f of %.1f MB (%.0f%%), %lld tokens, %.1f MB/s\n",
        done_, files_, mb, 1e-6 * static_cast<double>(total_),
        total_ > 0 ? 100.0 * static_cast<double>(bytes_) / static_cast<double>(total_) : 100.0,
        static_cast<long long>(tokens), mb / s);
  }
  bool on_;
  size_t files_, done_ = 0;
  int64_t total_ = 0, bytes_ = 0;
  Clock::time_point start_ = Clock::now(), last_ = Clock::now();
};

}  // namespace

int prepare_shard_version(int requested, int64_t vocab_size) {
  const bool wide = vocab_size > 65536;
  if (requested == 0) return wide ? kLlama3ShardVersion : 1;
  if (requested == 1 && wide)
    throw InputError("prepare-data: --version 1 stores uint16 tokens, but the tokenizer has " +
                     std::to_string(vocab_size) +
                     " tokens (use --version 7, llm.c's uint32 Llama-3 layout, or leave it out)");
  return requested;
}

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

  TokenizerChoice tok = choose_tokenizer(options, files);
  const int version = prepare_shard_version(
      options.version, tok.tokenizer ? tok.tokenizer->vocab_size() : options.training.vocab_size);
  const fs::path out = options.output_dir;
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec || !fs::is_directory(out))
    throw InputError("prepare-data: cannot create output directory '" + out.string() +
                     "': " + (ec ? ec.message() : "a file of that name exists"));
  store_tokenizer(tok, options, out);
  const int32_t separator = tok.tokenizer->document_separator();
  ShardStream train(out, "train", options.shard_tokens, version, separator);
  ShardStream val(out, "val", options.shard_tokens, version, separator);
  Progress progress(options.progress, files);
  std::vector<int32_t> tokens;
  for (const auto& path : files) {
    const std::string doc = read_file(path);
    progress.add(static_cast<int64_t>(doc.size()), train.tokens() + val.tokens());
    const std::string why = doc.empty() ? "empty" : binary_reason(doc);
    if (!why.empty()) {
      summary.skipped.push_back(path.string() + " (" + why + ")");
      continue;
    }
    const std::string_view view = doc;
    const size_t cut = train_bytes(view, options.val_fraction, *tok.tokenizer);
    for (auto [part, stream] : {std::pair{view.substr(0, cut), &train}, {view.substr(cut), &val}}) {
      tokens.clear();
      encode_document(*tok.tokenizer, part, tokens);
      stream->append_document(tokens);
    }
    summary.documents.push_back(path.string());
  }
  if (summary.documents.empty())
    throw InputError("prepare-data: no text files found in the inputs (" +
                     std::to_string(summary.skipped.size()) +
                     " skipped as binary, *.dat, empty or duplicate)");
  train.finish();
  val.finish();
  progress.finish(train.tokens() + val.tokens());
  write_tokenizer_info(out.string(), {tok.tokenizer->kind(), tok.model_file,
                                      tok.tokenizer->vocab_size(), separator});

  summary.files = static_cast<int64_t>(summary.documents.size());
  summary.skipped_files = static_cast<int64_t>(summary.skipped.size());
  summary.train_tokens = train.tokens();
  summary.val_tokens = val.tokens();
  summary.train_shards = train.paths();
  summary.val_shards = val.paths();
  summary.removed_stale_shards = remove_stale_shards(out, "train", train.paths().size()) +
                                 remove_stale_shards(out, "val", val.paths().size());
  summary.tokenizer_kind = tok.tokenizer->kind();
  summary.vocab_size = tok.tokenizer->vocab_size();
  summary.version = version;
  return summary;
}

}  // namespace strata
