#include "launch/data.h"

#include <fcntl.h>
#include <glob.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numeric>
#include <utility>

#include "core/error.h"
#include "core/rng.h"
#include "launch/megatron_index.h"
#include "launch/tokenizer_info.h"

namespace strata {

// The header and tokens are read and written in host byte order; the format is little endian.
static_assert(std::endian::native == std::endian::little,
              "token shards assume a little-endian host");

namespace fs = std::filesystem;

namespace {

std::string errno_text() { return std::strerror(errno); }

// ---------------------------------------------------------------------------------------------
// Reading

void check_holds_header(const std::string& path, int64_t file_bytes) {
  if (file_bytes < kShardHeaderBytes)
    throw InputError(path + ": truncated: " + std::to_string(file_bytes) +
                     " bytes, shorter than the " + std::to_string(kShardHeaderBytes) +
                     "-byte header of a token shard");
}

// Throws unless the header words and the file size agree exactly; returns the token count.
int64_t validate_header(const std::string& path, const int32_t* header, int64_t file_bytes) {
  if (header[0] != kShardMagic && header[0] != kLlama3ShardMagic)
    throw InputError(path + ": bad magic " + std::to_string(header[0]) + " (expected " +
                     std::to_string(kShardMagic) + " or " + std::to_string(kLlama3ShardMagic) +
                     ": not a token shard in llm.c's .bin layout, and no Megatron .idx beside it)");
  const int64_t width = shard_token_width(header[1]);
  if (width == 0 || shard_magic(header[1]) != header[0])
    throw InputError(path + ": unsupported version " + std::to_string(header[1]) + " for magic " +
                     std::to_string(header[0]) + " (expected magic " + std::to_string(kShardMagic) +
                     " with version 1 = uint16 tokens or 2 = " + "uint32 tokens, or magic " +
                     std::to_string(kLlama3ShardMagic) + " with version 7 = uint32 tokens)");
  const int64_t ntok = header[2];
  if (ntok < 0)
    throw InputError(path + ": header says " + std::to_string(ntok) +
                     " tokens (expected a count >= 0)");
  const int64_t expected = kShardHeaderBytes + ntok * width;
  if (file_bytes != expected)
    throw InputError(path + ": " + (file_bytes < expected ? "truncated: " : "trailing data: ") +
                     "header says " + std::to_string(ntok) + " tokens (" +
                     std::to_string(expected) + " bytes) but file has " +
                     std::to_string(file_bytes) + " bytes");
  return ntok;
}

TokenType shard_token_type(int version) { return version == 1 ? TokenType::u16 : TokenType::u32; }

// ---------------------------------------------------------------------------------------------
// Writing

void write_all(int fd, const void* data, size_t bytes, const std::string& path) {
  const auto* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw InputError(path + ": cannot write token shard: " + errno_text());
    p += n;
    bytes -= static_cast<size_t>(n);
  }
}

void check_writable_tokens(const std::string& path, std::span<const int32_t> tokens, int version) {
  const int64_t max_token =
      version == 1 ? std::numeric_limits<uint16_t>::max() : std::numeric_limits<int32_t>::max();
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] > max_token)
      throw InputError(path + ": token at index " + std::to_string(i) + " has value " +
                       std::to_string(tokens[i]) + ", expected 0.." + std::to_string(max_token) +
                       " for a version " + std::to_string(version) + " shard");
  if (tokens.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    throw InputError(path + ": " + std::to_string(tokens.size()) +
                     " tokens do not fit the int32 count of one shard");
}

// Header then tokens at the shard's width, converted in blocks to bound the extra memory.
void write_shard_body(int fd, const std::string& path, std::span<const int32_t> tokens,
                      int version) {
  std::array<int32_t, kShardHeaderInts> header{};
  header[0] = shard_magic(version);
  header[1] = version;
  header[2] = static_cast<int32_t>(tokens.size());
  write_all(fd, header.data(), sizeof(header), path);
  constexpr size_t kBlock = 1 << 20;
  std::vector<uint16_t> narrow;
  for (size_t begin = 0; begin < tokens.size(); begin += kBlock) {
    const auto block = tokens.subspan(begin, std::min(kBlock, tokens.size() - begin));
    if (version != 1) {
      write_all(fd, block.data(), block.size_bytes(), path);  // int32 >= 0 == uint32 bits
      continue;
    }
    narrow.assign(block.begin(), block.end());
    write_all(fd, narrow.data(), narrow.size() * sizeof(uint16_t), path);
  }
}

// ---------------------------------------------------------------------------------------------
// Spec resolution

std::vector<std::string> bin_files_in(const std::string& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.path().extension() == ".bin" && entry.is_regular_file(ec))
      found.push_back(entry.path().string());
  if (ec) throw InputError("data spec '" + dir + "': cannot list directory: " + ec.message());
  std::sort(found.begin(), found.end());  // byte order, independent of the locale
  return found;
}

std::vector<std::string> glob_files(const std::string& pattern) {
  glob_t g{};
  std::vector<std::string> found;
  if (::glob(pattern.c_str(), 0, nullptr, &g) == 0) {
    std::error_code ec;
    for (size_t i = 0; i < g.gl_pathc; ++i)
      if (fs::is_regular_file(g.gl_pathv[i], ec)) found.emplace_back(g.gl_pathv[i]);
  }
  globfree(&g);
  std::sort(found.begin(), found.end());
  return found;
}

int64_t windows_in(int64_t tokens, int64_t seq_len) {
  return tokens > 0 ? (tokens - 1) / seq_len : 0;
}

}  // namespace

int64_t shard_token_width(int version) {
  return version == 1 ? 2 : (version == 2 || version == kLlama3ShardVersion) ? 4 : 0;
}

int32_t shard_magic(int version) {
  return version == kLlama3ShardVersion ? kLlama3ShardMagic : kShardMagic;
}

TokenShardHeader parse_token_shard(const unsigned char* bytes, int64_t size, int64_t vocab_size,
                                   const std::string& source) {
  check_holds_header(source, size);
  int32_t header[3];
  std::memcpy(header, bytes, sizeof(header));
  const TokenShardHeader h{header[1], validate_header(source, header, size)};
  check_tokens(shard_token_type(h.version), bytes + kShardHeaderBytes, h.num_tokens, vocab_size,
               source);
  return h;
}

// ---------------------------------------------------------------------------------------------
// TokenShard

TokenShard::TokenShard(const std::string& path, int64_t vocab_size) : path_(path) {
  STRATA_CHECK(vocab_size > 0 && vocab_size <= (int64_t{1} << 31), "vocab_size out of range");
  if (has_megatron_index(path)) {
    open_megatron(vocab_size);
    return;
  }
  map_ = MappedFile(path, "token shard");
  const TokenShardHeader h = parse_token_shard(map_.data(), map_.size(), vocab_size, path);
  version_ = h.version;
  type_ = shard_token_type(h.version);
  num_tokens_ = h.num_tokens;
  tokens_ = map_.data() + kShardHeaderBytes;
}

// The index is checked and dropped: reading the stream needs only the .bin.
void TokenShard::open_megatron(int64_t vocab_size) {
  const std::string idx_path = megatron_index_path(path_);
  map_ = MappedFile(path_, "Megatron .bin (the tokens of " + idx_path + ")");
  const MappedFile idx(idx_path, "Megatron .idx index");
  const MegatronIndex m =
      parse_megatron_index(idx.data(), idx.size(), map_.size(), idx_path, path_);
  type_ = m.type;
  num_tokens_ = m.num_tokens;
  tokens_ = map_.data();
  check_tokens(type_, tokens_, num_tokens_, vocab_size, path_);
}

int32_t TokenShard::at(int64_t i) const {
  int32_t v = 0;
  copy_tokens(type_, tokens_, i, 1, &v);
  return v;
}

void TokenShard::copy(int64_t begin, int64_t n, int32_t* dst) const {
  STRATA_CHECK(begin >= 0 && n >= 0 && begin + n <= num_tokens_, "token range outside shard");
  copy_tokens(type_, tokens_, begin, n, dst);
}

void write_token_shard(const std::string& path, std::span<const int32_t> tokens, int version) {
  if (shard_token_width(version) == 0)
    throw InputError(path + ": cannot write token shard version " + std::to_string(version) +
                     " (expected 1 = uint16 tokens, 7 = llm.c's Llama-3 uint32 layout, or 2)");
  check_writable_tokens(path, tokens, version);
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw InputError(tmp + ": cannot create token shard: " + errno_text());
  try {
    write_shard_body(fd, tmp, tokens, version);
    // Flushed before the rename so that after a crash the final name holds all of the data.
    if (::fsync(fd) != 0) throw InputError(tmp + ": cannot flush token shard: " + errno_text());
    if (::close(fd) != 0) throw InputError(tmp + ": cannot close token shard: " + errno_text());
  } catch (...) {
    ::close(fd);  // harmless EBADF when close() itself failed above
    ::unlink(tmp.c_str());
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = errno_text();
    ::unlink(tmp.c_str());
    throw InputError(path + ": cannot rename " + tmp + " into place: " + why);
  }
}

std::vector<std::string> resolve_shards(const std::string& spec) {
  if (spec.empty())
    throw InputError("data spec is empty (expected a .bin file, a directory, a prefix or a glob)");
  std::error_code ec;
  const auto st = fs::status(spec, ec);
  // A Megatron dataset is named by its .idx, its .bin or the prefix both share.
  if (fs::is_regular_file(st) && fs::path(spec).extension() == ".idx")
    return {fs::path(spec).replace_extension(".bin").string()};
  if (fs::is_regular_file(st)) return {spec};
  if (!fs::exists(st) && has_megatron_index(spec + ".bin")) return {spec + ".bin"};
  if (fs::is_directory(st)) {
    auto found = bin_files_in(spec);
    if (found.empty())
      throw InputError("data spec '" + spec + "': directory contains no *.bin token shards");
    return found;
  }
  const bool is_glob = spec.find_first_of("*?[") != std::string::npos;
  const std::string pattern = is_glob ? spec : spec + "_*.bin";
  auto found = glob_files(pattern);
  if (found.empty())
    throw InputError("data spec '" + spec + "': no token shards found (tried: a file or " +
                     "directory named '" + spec + "', then " +
                     (is_glob ? "the glob '" : "the prefix pattern '") + pattern + "')");
  return found;
}

// ---------------------------------------------------------------------------------------------
// ShardSet

ShardSet::ShardSet(const std::string& spec, int64_t seq_len, int64_t vocab_size)
    : spec_(spec), seq_len_(seq_len) {
  if (seq_len <= 0)
    throw InputError("data '" + spec + "': seq_len must be positive, got " +
                     std::to_string(seq_len));
  window_begin_.push_back(0);
  int64_t largest = 0;
  const std::vector<std::string> paths = resolve_shards(spec);
  check_tokenizer_vocab(paths, vocab_size);  // one clear message before any token is scanned
  for (const auto& path : paths) {
    shards_.emplace_back(path, vocab_size);
    const int64_t n = shards_.back().size();
    num_tokens_ += n;
    largest = std::max(largest, n);
    window_begin_.push_back(window_begin_.back() + windows_in(n, seq_len));
  }
  if (num_windows() == 0)
    throw InputError("data '" + spec +
                     "': no shard holds one window of seq_len+1 = " + std::to_string(seq_len + 1) +
                     " tokens (" + std::to_string(shards_.size()) + " shard(s), " +
                     std::to_string(num_tokens_) + " tokens in total, the largest has " +
                     std::to_string(largest) + "; windows never cross shards)");
}

std::vector<std::string> ShardSet::shard_paths() const {
  std::vector<std::string> paths;
  for (const auto& s : shards_) paths.push_back(s.path());
  return paths;
}

void ShardSet::read_window(int64_t w, int32_t* inputs, int32_t* targets) const {
  STRATA_CHECK(w >= 0 && w < num_windows(), "window index out of range");
  // Empty shards repeat a prefix value; upper_bound lands past them on the shard holding w.
  const auto it = std::upper_bound(window_begin_.begin(), window_begin_.end(), w);
  const auto s = static_cast<size_t>(it - window_begin_.begin() - 1);
  const int64_t start = (w - window_begin_[s]) * seq_len_;
  shards_[s].copy(start, seq_len_, inputs);
  shards_[s].copy(start + 1, seq_len_, targets);
}

// ---------------------------------------------------------------------------------------------
// Loaders

DataLoader::DataLoader(const std::string& spec, int64_t seq_len, int64_t vocab_size, uint64_t seed)
    : shards_(spec, seq_len, vocab_size), seed_(seed) {
  shuffle_for_epoch(0);
}

void DataLoader::shuffle_for_epoch(int64_t epoch) {
  order_.resize(static_cast<size_t>(num_windows()));
  std::iota(order_.begin(), order_.end(), int64_t{0});
  // Keyed by (seed, epoch) alone, so any epoch's order can be rebuilt on restore.
  RngStream rng{rng_key(seed_, "data/epoch/" + std::to_string(epoch)), 0};
  for (size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[rng.next_below(i)]);
}

void DataLoader::next_batch(int64_t n_sequences, int32_t* inputs, int32_t* targets) {
  STRATA_CHECK(n_sequences >= 0, "negative batch size");
  const int64_t len = seq_len();
  for (int64_t i = 0; i < n_sequences; ++i) {
    if (state_.index == num_windows()) {  // roll over lazily so state() may end an epoch
      ++state_.epoch;
      state_.index = 0;
      shuffle_for_epoch(state_.epoch);
    }
    shards_.read_window(order_[static_cast<size_t>(state_.index++)], inputs + i * len,
                        targets + i * len);
  }
}

void DataLoader::restore(const LoaderState& s) {
  if (s.epoch < 0 || s.index < 0 || s.index > num_windows())
    throw InputError("data loader state (epoch " + std::to_string(s.epoch) + ", index " +
                     std::to_string(s.index) + ") does not fit data '" + shards_.spec() +
                     "' with " + std::to_string(num_windows()) +
                     " windows; did the data change since the checkpoint?");
  if (s.epoch != state_.epoch) shuffle_for_epoch(s.epoch);
  state_ = s;
}

EvalLoader::EvalLoader(const std::string& spec, int64_t seq_len, int64_t vocab_size)
    : shards_(spec, seq_len, vocab_size) {}

void EvalLoader::next_batch(int64_t n_sequences, int32_t* inputs, int32_t* targets) {
  STRATA_CHECK(n_sequences >= 0, "negative batch size");
  const int64_t len = seq_len();
  for (int64_t i = 0; i < n_sequences; ++i) {
    shards_.read_window(next_, inputs + i * len, targets + i * len);
    next_ = (next_ + 1) % num_windows();
  }
}

}  // namespace strata
