#pragma once
// Token data for training: token shards (memory-mapped), resolution of a data spec to its
// shards, and the loaders that cut shards into (inputs, targets) windows.
//
// Shard layouts read:
//   llm.c's .bin (dev/data/data_common.py): 256 little-endian int32 header words, [0] = magic,
//     [1] = version, [2] = token count; then the tokens. Magic 20240520 version 1: uint16 tokens
//     (llm.c's GPT-2 layout); magic 20240801 version 7: uint32 tokens (llm.c's Llama-3 layout);
//     magic 20240520 version 2: uint32 tokens (Strata's former uint32 layout, still read).
//   Megatron-LM's indexed dataset: a .bin with an .idx beside it (launch/megatron_index.h),
//     read as one stream of tokens, its sequences in order.
//
// A window is seq_len+1 consecutive tokens starting at a multiple of seq_len inside one shard;
// inputs are its first seq_len tokens and targets its last seq_len. Windows never cross a shard
// boundary, so a shard of n tokens holds (n-1)/seq_len windows.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "launch/mapped_file.h"
#include "launch/token_type.h"

namespace strata {

inline constexpr int32_t kShardMagic = 20240520;        // versions 1 and 2
inline constexpr int32_t kLlama3ShardMagic = 20240801;  // version 7
inline constexpr int kLlama3ShardVersion = 7;
inline constexpr int64_t kShardHeaderInts = 256;
inline constexpr int64_t kShardHeaderBytes = kShardHeaderInts * 4;

// Bytes per token of a shard version (1 -> 2, 2 -> 4, 7 -> 4); 0 for an unknown version.
int64_t shard_token_width(int version);
// The magic a shard of `version` carries (7: llm.c's Llama-3 magic, else 20240520).
int32_t shard_magic(int version);

struct TokenShardHeader {
  int version = 0;
  int64_t num_tokens = 0;
};

// What opening a shard checks, on its `size` bytes in memory (4-byte aligned): the header
// against the byte count, and every token < vocab_size. InputError naming `source`. TokenShard
// runs it on the mapped file; tests/fuzz feeds it arbitrary bytes.
TokenShardHeader parse_token_shard(const unsigned char* bytes, int64_t size, int64_t vocab_size,
                                   const std::string& source);

// A read-only, memory-mapped token shard: an llm.c shard, or a Megatron .bin when an .idx lies
// beside it. Opening validates the header (or the index), the exact file size and that every
// token is in [0, vocab_size), so later reads need no checks. Move-only.
class TokenShard {
 public:
  TokenShard(const std::string& path, int64_t vocab_size);

  const std::string& path() const { return path_; }
  // The llm.c version (1, 2 or 7); 0 for a Megatron dataset.
  int version() const { return version_; }
  bool megatron() const { return version_ == 0; }
  TokenType type() const { return type_; }
  int64_t size() const { return num_tokens_; }
  int32_t at(int64_t i) const;
  // Copies tokens [begin, begin+n) into dst as int32.
  void copy(int64_t begin, int64_t n, int32_t* dst) const;

 private:
  void open_megatron(int64_t vocab_size);

  std::string path_;
  MappedFile map_;
  int version_ = 0;
  TokenType type_ = TokenType::u16;
  int64_t num_tokens_ = 0;
  const unsigned char* tokens_ = nullptr;  // first token byte, inside map_
};

// Writes a shard atomically: the data goes to path+".tmp", is flushed to disk and renamed, so a
// crash never leaves a half-written shard under the final name. Version 1 stores uint16 tokens
// (each must be < 65536) in llm.c's GPT-2 layout, version 7 uint32 in llm.c's Llama-3 layout;
// version 2 (uint32, magic 20240520) is written only for tests of reading it. Errors (bad
// token, unwritable path) are InputError.
void write_token_shard(const std::string& path, std::span<const int32_t> tokens, int version = 1);

// Resolves a data spec to a sorted list of shard paths. The spec is, tried in this order: an
// existing file (a Megatron P.idx means P.bin); a Megatron prefix P (P.bin and P.idx exist); a
// directory (every *.bin directly inside); a glob(3) pattern (when it contains *, ? or [); a
// prefix P matching P_*.bin (e.g. "data/fortunes/train"). Nothing found is an InputError naming
// the spec and what was tried.
std::vector<std::string> resolve_shards(const std::string& spec);

// The shards of one spec with a global window index over all of them.
class ShardSet {
 public:
  ShardSet(const std::string& spec, int64_t seq_len, int64_t vocab_size);

  const std::string& spec() const { return spec_; }
  int64_t seq_len() const { return seq_len_; }
  int64_t num_windows() const { return window_begin_.back(); }
  int64_t num_tokens() const { return num_tokens_; }
  std::vector<std::string> shard_paths() const;
  // Fills seq_len inputs and seq_len targets from global window w.
  void read_window(int64_t w, int32_t* inputs, int32_t* targets) const;

 private:
  std::string spec_;
  int64_t seq_len_;
  int64_t num_tokens_ = 0;
  std::vector<TokenShard> shards_;
  std::vector<int64_t> window_begin_;  // prefix sums: shard s holds [begin[s], begin[s+1])
};

// Position of the training loader: `index` windows of epoch `epoch` have been consumed.
struct LoaderState {
  int64_t epoch = 0;
  int64_t index = 0;
  bool operator==(const LoaderState&) const = default;
};

// Training loader: every epoch visits every window once, in a Fisher-Yates permutation derived
// only from (seed, epoch), so the order is independent of the process layout and a restored
// state replays exactly. Every data-parallel rank reads the same global batch and slices it.
class DataLoader {
 public:
  DataLoader(const std::string& spec, int64_t seq_len, int64_t vocab_size, uint64_t seed);

  // Fills n_sequences*seq_len int32 into each of inputs and targets and advances.
  void next_batch(int64_t n_sequences, int32_t* inputs, int32_t* targets);
  LoaderState state() const { return state_; }
  // Continues from `s` (e.g. from a checkpoint); InputError when it does not fit this data.
  void restore(const LoaderState& s);

  int64_t seq_len() const { return shards_.seq_len(); }
  int64_t num_windows() const { return shards_.num_windows(); }
  int64_t num_tokens() const { return shards_.num_tokens(); }
  std::vector<std::string> shard_paths() const { return shards_.shard_paths(); }

 private:
  void shuffle_for_epoch(int64_t epoch);

  ShardSet shards_;
  uint64_t seed_;
  LoaderState state_;
  std::vector<int64_t> order_;  // permutation of the windows for state_.epoch
};

// Evaluation loader: windows in order from the start of the shards, wrapping at the end, so
// every evaluation that starts with reset() sees the same tokens.
class EvalLoader {
 public:
  EvalLoader(const std::string& spec, int64_t seq_len, int64_t vocab_size);

  void next_batch(int64_t n_sequences, int32_t* inputs, int32_t* targets);
  void reset() { next_ = 0; }

  int64_t seq_len() const { return shards_.seq_len(); }
  int64_t num_windows() const { return shards_.num_windows(); }
  int64_t num_tokens() const { return shards_.num_tokens(); }

 private:
  ShardSet shards_;
  int64_t next_ = 0;
};

}  // namespace strata
