#include "launch/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <set>

#include "core/atomic_file.h"
#include "core/crc32c.h"
#include "core/error.h"
#include "core/log.h"

namespace strata {
namespace fs = std::filesystem;

namespace {

constexpr const char* kCheckpointFormat = "strata-checkpoint-v1";
constexpr const char* kShardFormat = "strata-shard-v1";
constexpr const char* kManifest = "manifest.yaml";
constexpr const char* kLatest = "latest";
constexpr int64_t kAlign = 64;         // slice offsets in a .bin: cache-line / mmap friendly
constexpr size_t kIoChunk = 4u << 20;  // bytes per read/crc step: stays in cache while hashed
constexpr int64_t kMaxNumel = int64_t{1} << 56;  // keeps byte offsets far from int64 overflow

// ---------------------------------------------------------------------------------------------
// In-memory form of an index file / a manifest's shard record.

struct Entry {
  std::string name;
  std::vector<int64_t> global_shape;
  int64_t global_offset = 0;
  int64_t numel = 0;
  int64_t offset = 0;  // bytes into the .bin
  uint32_t crc = 0;
  int64_t bytes() const { return numel * static_cast<int64_t>(sizeof(float)); }
};

struct Shard {
  int rank = 0;
  std::string file;  // relative to the step directory
  int64_t size = 0;
  uint32_t crc = 0;
  std::vector<Entry> entries;  // ascending offset
};

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string join(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

// ---------------------------------------------------------------------------------------------
// YAML emission

void emit_shard_fields(YAML::Emitter& e, const Shard& s) {
  e << YAML::Key << "rank" << YAML::Value << s.rank;
  e << YAML::Key << "file" << YAML::Value << s.file;
  e << YAML::Key << "size" << YAML::Value << s.size;
  e << YAML::Key << "crc32c" << YAML::Value << s.crc;
  e << YAML::Key << "entries" << YAML::Value << YAML::BeginSeq;
  for (const Entry& en : s.entries) {
    e << YAML::BeginMap;
    e << YAML::Key << "name" << YAML::Value << en.name;
    e << YAML::Key << "dtype" << YAML::Value << "F32";
    e << YAML::Key << "global_shape" << YAML::Value << YAML::Flow << en.global_shape;
    e << YAML::Key << "global_offset" << YAML::Value << en.global_offset;
    e << YAML::Key << "numel" << YAML::Value << en.numel;
    e << YAML::Key << "offset" << YAML::Value << en.offset;
    e << YAML::Key << "crc32c" << YAML::Value << en.crc;
    e << YAML::EndMap;
  }
  e << YAML::EndSeq;
}

std::string index_yaml(int64_t step, const Shard& s) {
  YAML::Emitter e;
  e << YAML::BeginMap;
  e << YAML::Key << "format" << YAML::Value << kShardFormat;
  e << YAML::Key << "step" << YAML::Value << step;
  emit_shard_fields(e, s);
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

// yaml-cpp emits invalid UTF-8 verbatim and then cannot read it back, so only text is stored.
bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t len = c < 0x80           ? 1
                       : (c >> 5) == 0x6  ? 2
                       : (c >> 4) == 0xE  ? 3
                       : (c >> 3) == 0x1E ? 4
                                          : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}

// A literal block keeps the config readable in the manifest, but YAML cannot represent every
// string that way (leading blank lines, missing final newline, ...): check by parsing it back.
bool literal_round_trips(const std::string& text) {
  YAML::Emitter e;
  e << YAML::BeginMap << YAML::Key << "v" << YAML::Value << YAML::Literal << text << YAML::EndMap;
  try {
    return e.good() && YAML::Load(e.c_str())["v"].as<std::string>() == text;
  } catch (const YAML::Exception&) {
    return false;
  }
}

std::string manifest_yaml(int64_t step, const std::vector<Shard>& shards,
                          const std::map<std::string, std::string>& state,
                          const std::string& config_yaml) {
  STRATA_CHECK(valid_utf8(config_yaml), "checkpoint config text is not valid UTF-8");
  YAML::Emitter e;
  e << YAML::BeginMap;
  e << YAML::Key << "format" << YAML::Value << kCheckpointFormat;
  e << YAML::Key << "step" << YAML::Value << step;
  e << YAML::Key << "world" << YAML::Value << static_cast<int64_t>(shards.size());
  e << YAML::Key << "state" << YAML::Value << YAML::BeginMap;
  for (const auto& [k, v] : state) {
    STRATA_CHECK(valid_utf8(k) && valid_utf8(v), "checkpoint state '" + k + "' is not UTF-8 text");
    e << YAML::Key << k << YAML::Value << v;
  }
  e << YAML::EndMap;
  e << YAML::Key << "shards" << YAML::Value << YAML::BeginSeq;
  for (const Shard& s : shards) {
    e << YAML::BeginMap;
    emit_shard_fields(e, s);
    e << YAML::EndMap;
  }
  e << YAML::EndSeq;
  e << YAML::Key << "config" << YAML::Value;
  if (literal_round_trips(config_yaml)) e << YAML::Literal;
  e << config_yaml;
  e << YAML::EndMap;
  STRATA_CHECK(e.good(), std::string("cannot emit checkpoint manifest: ") + e.GetLastError());
  return std::string(e.c_str()) + "\n";
}

// ---------------------------------------------------------------------------------------------
// YAML parsing: every problem is an InputError naming the file and the key.

class YamlReader {
 public:
  explicit YamlReader(std::string file) : file_(std::move(file)) {}

  YAML::Node load() const {
    if (!fs::exists(file_)) fail("missing (expected a checkpoint " + what() + ")");
    try {
      YAML::Node n = YAML::LoadFile(file_);
      if (!n.IsMap()) fail("expected a YAML map");
      return n;
    } catch (const YAML::Exception& e) {
      fail(std::string("cannot parse: ") + e.what());
    }
  }

  [[noreturn]] void fail(const std::string& why) const { throw InputError(file_ + ": " + why); }

  const YAML::Node field(const YAML::Node& n, const std::string& key) const {
    const YAML::Node v = n[key];
    if (!v) fail("missing key '" + key + "'");
    return v;
  }

  int64_t integer(const YAML::Node& n, const std::string& key, int64_t lo,
                  int64_t hi = std::numeric_limits<int64_t>::max()) const {
    const YAML::Node v = field(n, key);
    int64_t x = 0;
    if (!v.IsScalar() || !YAML::convert<int64_t>::decode(v, x))
      fail("key '" + key + "': expected an integer");
    if (x < lo || x > hi)
      fail("key '" + key + "': " + std::to_string(x) + " out of range [" + std::to_string(lo) +
           ", " + std::to_string(hi) + "]");
    return x;
  }

  std::string string(const YAML::Node& n, const std::string& key) const {
    const YAML::Node v = field(n, key);
    if (!v.IsScalar()) fail("key '" + key + "': expected a string");
    return v.Scalar();
  }

  std::vector<int64_t> shape(const YAML::Node& n, const std::string& key) const {
    const YAML::Node v = field(n, key);
    if (!v.IsSequence()) fail("key '" + key + "': expected a list of dimensions");
    std::vector<int64_t> out;
    int64_t numel = 1;
    for (size_t i = 0; i < v.size(); ++i) {
      int64_t d = -1;
      if (!v[i].IsScalar() || !YAML::convert<int64_t>::decode(v[i], d) || d < 0)
        fail("key '" + key + "': expected non-negative integer dimensions");
      if (d > 0 && numel > kMaxNumel / d) fail("key '" + key + "': tensor too large");
      numel *= d;
      out.push_back(d);
    }
    return out;
  }

  uint32_t crc(const YAML::Node& n) const {
    return static_cast<uint32_t>(integer(n, "crc32c", 0, 0xFFFFFFFFll));
  }

 private:
  std::string what() const {
    return fs::path(file_).filename() == kManifest ? "manifest" : "shard index";
  }
  std::string file_;
};

Entry parse_entry(const YamlReader& r, const YAML::Node& n) {
  Entry e;
  e.name = r.string(n, "name");
  if (r.string(n, "dtype") != "F32") r.fail("entry '" + e.name + "': expected dtype F32");
  e.global_shape = r.shape(n, "global_shape");
  const int64_t total = product(e.global_shape);
  e.global_offset = r.integer(n, "global_offset", 0, total);
  e.numel = r.integer(n, "numel", 0, total - e.global_offset);
  e.offset = r.integer(n, "offset", 0);
  e.crc = r.crc(n);
  return e;
}

// A shard record (index file or manifest item); checks entries lie inside the file in order.
Shard parse_shard(const YamlReader& r, const YAML::Node& n) {
  Shard s;
  s.rank = static_cast<int>(r.integer(n, "rank", 0, std::numeric_limits<int>::max()));
  s.file = r.string(n, "file");
  if (s.file != shard_file_name(s.rank)) r.fail("expected file " + shard_file_name(s.rank));
  s.size = r.integer(n, "size", 0);
  s.crc = r.crc(n);
  const YAML::Node entries = r.field(n, "entries");
  if (!entries.IsSequence()) r.fail("key 'entries': expected a list");
  int64_t end = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    Entry e = parse_entry(r, entries[i]);
    if (e.offset < end || e.offset + e.bytes() > s.size)
      r.fail("entry '" + e.name + "' of " + s.file + ": byte range [" + std::to_string(e.offset) +
             ", " + std::to_string(e.offset + e.bytes()) + ") overlaps another entry or lies " +
             "outside the " + std::to_string(s.size) + "-byte file");
    end = e.offset + e.bytes();
    s.entries.push_back(std::move(e));
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Step directories

std::optional<int64_t> parse_step_dir(const std::string& name) {
  if (name.size() <= 5 || name.compare(0, 5, "step_") != 0 || name.size() > 5 + 18)
    return std::nullopt;
  for (size_t i = 5; i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
  return std::stoll(name.substr(5));
}

struct StepDir {
  int64_t step;
  fs::path path;
  bool committed;
};

// Step directories under root, newest first.
std::vector<StepDir> list_step_dirs(const std::string& root) {
  std::vector<StepDir> out;
  std::error_code ec;
  for (const auto& d : fs::directory_iterator(root, ec)) {
    if (!d.is_directory()) continue;
    if (auto step = parse_step_dir(d.path().filename().string()))
      out.push_back({*step, d.path(), fs::exists(d.path() / kManifest)});
  }
  std::sort(out.begin(), out.end(),
            [](const StepDir& a, const StepDir& b) { return a.step > b.step; });
  return out;
}

void remove_dir(const fs::path& p) {
  std::error_code ec;
  fs::remove_all(p, ec);
  if (ec) log_warn("checkpoint: cannot remove " + p.string() + ": " + ec.message());
}

// Keeps the new step and the keep_last - 1 newest committed steps before it; removes aborted
// saves older than it. Newer directories (from a run that was resumed from an older
// checkpoint) are left alone: they are not this run's to judge.
void prune(const std::string& root, int64_t step, int64_t keep_last) {
  int64_t kept = 1;  // the new checkpoint
  for (const StepDir& d : list_step_dirs(root)) {
    if (d.step >= step) continue;
    if (!d.committed) {
      remove_dir(d.path);
    } else if (keep_last > 0 && kept >= keep_last) {
      remove_dir(d.path);
    } else {
      ++kept;
    }
  }
}

// Shard files of ranks >= world (left by an aborted save with more ranks) and temp files would
// otherwise sit in a committed directory forever.
void remove_strays(const std::string& dir, int world) {
  std::set<std::string> wanted;
  for (int r = 0; r < world; ++r) {
    wanted.insert(shard_file_name(r));
    wanted.insert(shard_index_name(r));
  }
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(dir, ec)) {
    const std::string name = f.path().filename().string();
    if (name.rfind("shard_r", 0) == 0 && !wanted.count(name)) fs::remove(f.path(), ec);
  }
}

// ---------------------------------------------------------------------------------------------
// Shard writing

// Saving a step that is already committed (a run restarted with resume: never) replaces it.
// Its manifest goes first, durably, so that no moment exists where a manifest describes shard
// files that are being rewritten. Every rank does this; whichever comes first removes it.
void uncommit(const std::string& dir) {
  const fs::path manifest = fs::path(dir) / kManifest;
  std::error_code ec;
  if (!fs::exists(manifest)) return;
  if (fs::remove(manifest, ec))
    log_warn("checkpoint: replacing the existing checkpoint in " + dir);
  else if (ec)
    throw StrataError("cannot remove " + manifest.string() + ": " + ec.message());
  fsync_dir(dir);
}

void check_slice(const TensorSlice& s) {
  const int64_t total = product(s.global_shape);
  STRATA_CHECK(!s.name.empty() && valid_utf8(s.name),
               "bad checkpoint tensor name '" + s.name + "'");
  STRATA_CHECK(s.global_offset >= 0 && s.numel >= 0 && s.global_offset + s.numel <= total,
               "slice of '" + s.name + "' outside its tensor");
  STRATA_CHECK(s.data != nullptr || s.numel == 0, "null data for slice of '" + s.name + "'");
}

// Appends one slice at the next aligned offset, hashing chunk by chunk while it is in cache.
Entry append_slice(AtomicFile& f, uint32_t& file_crc, const TensorSlice& s) {
  const int64_t pad = (kAlign - f.size() % kAlign) % kAlign;
  static const char kZeros[kAlign] = {};
  file_crc = crc32c(kZeros, static_cast<size_t>(pad), file_crc);
  f.write_zeros(static_cast<size_t>(pad));
  Entry e{s.name, s.global_shape, s.global_offset, s.numel, f.size(), 0};
  const char* p = reinterpret_cast<const char*>(s.data);
  for (int64_t left = e.bytes(); left > 0;) {
    const size_t k = std::min(static_cast<size_t>(left), kIoChunk);
    e.crc = crc32c(p, k, e.crc);
    file_crc = crc32c(p, k, file_crc);
    f.write(p, k);
    p += k;
    left -= static_cast<int64_t>(k);
  }
  return e;
}

// ---------------------------------------------------------------------------------------------
// Shard reading

class Fd {
 public:
  explicit Fd(const std::string& path) : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// pread exactly n bytes; false on EOF or error.
bool pread_all(int fd, void* dst, size_t n, int64_t offset) {
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, offset);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
    offset += r;
  }
  return true;
}

std::string hex(uint32_t x) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", x);
  return buf;
}

// One sequential pass over a shard file: size, every entry's crc, then the whole-file crc.
void verify_shard(const std::string& path, const Shard& s) {
  Fd fd(path);
  if (fd.get() < 0)
    throw InputError(path + ": missing or unreadable checkpoint shard (" + std::strerror(errno) +
                     ")");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || st.st_size != s.size)
    throw InputError(path + ": checkpoint shard is " + std::to_string(st.st_size) +
                     " bytes, the manifest expects " + std::to_string(s.size) +
                     " (truncated or overwritten)");
  std::vector<char> buf(kIoChunk);
  uint32_t file_crc = 0;
  int64_t pos = 0;
  // Hashes [pos, end) into the file crc and, when given, an entry crc.
  auto hash_to = [&](int64_t end, uint32_t* entry_crc) {
    while (pos < end) {
      const size_t k = static_cast<size_t>(std::min<int64_t>(end - pos, kIoChunk));
      if (!pread_all(fd.get(), buf.data(), k, pos))
        throw InputError(path + ": cannot read checkpoint shard at byte " + std::to_string(pos));
      file_crc = crc32c(buf.data(), k, file_crc);
      if (entry_crc) *entry_crc = crc32c(buf.data(), k, *entry_crc);
      pos += static_cast<int64_t>(k);
    }
  };
  for (const Entry& e : s.entries) {
    hash_to(e.offset, nullptr);
    uint32_t crc = 0;
    hash_to(e.offset + e.bytes(), &crc);
    if (crc != e.crc)
      throw InputError(path + ": checksum mismatch in tensor '" + e.name + "' (crc32c " + hex(crc) +
                       ", manifest expects " + hex(e.crc) + ")");
  }
  hash_to(s.size, nullptr);
  if (file_crc != s.crc)
    throw InputError(path + ": checksum mismatch (crc32c " + hex(file_crc) + ", manifest expects " +
                     hex(s.crc) + ")");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Names

std::string step_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step_%08lld", static_cast<long long>(step));
  return buf;
}

std::string shard_file_name(int rank) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "shard_r%05d.bin", rank);
  return buf;
}

std::string shard_index_name(int rank) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "shard_r%05d.index.yaml", rank);
  return buf;
}

bool is_committed(const std::string& root, int64_t step) {
  return fs::exists(fs::path(root) / step_dir_name(step) / kManifest);
}

// ---------------------------------------------------------------------------------------------
// Writing and committing

void write_shard(const std::string& root, int64_t step, int rank,
                 const std::vector<TensorSlice>& slices) {
  STRATA_CHECK(step >= 0 && rank >= 0, "bad checkpoint step or rank");
  const std::string dir = join(root, step_dir_name(step));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw StrataError("cannot create checkpoint directory " + dir + ": " + ec.message());
  uncommit(dir);
  for (const TensorSlice& s : slices) check_slice(s);

  Shard shard;
  shard.rank = rank;
  shard.file = shard_file_name(rank);
  AtomicFile bin(join(dir, shard.file));
  for (const TensorSlice& s : slices) shard.entries.push_back(append_slice(bin, shard.crc, s));
  shard.size = bin.size();
  bin.commit();
  // The index is the rank's "done" mark, so it is written only once the data is durable.
  write_file_atomic(join(dir, shard_index_name(rank)), index_yaml(step, shard));
}

void commit_checkpoint(const std::string& root, int64_t step, int world,
                       const std::map<std::string, std::string>& state,
                       const std::string& config_yaml, int64_t keep_last) {
  STRATA_CHECK(world >= 1 && keep_last >= 0, "bad checkpoint world or keep_last");
  const std::string dir = join(root, step_dir_name(step));
  std::vector<Shard> shards;
  std::map<std::string, std::vector<int64_t>> shapes;
  for (int r = 0; r < world; ++r) {
    const YamlReader reader(join(dir, shard_index_name(r)));
    const YAML::Node n = reader.load();
    if (reader.integer(n, "step", 0) != step) reader.fail("written for a different step");
    Shard s = parse_shard(reader, n);
    if (s.rank != r) reader.fail("written by rank " + std::to_string(s.rank));
    std::error_code ec;
    const auto size = static_cast<int64_t>(fs::file_size(join(dir, s.file), ec));
    if (ec || size != s.size)
      reader.fail(s.file + " is missing or not the " + std::to_string(s.size) +
                  " bytes the index records");
    for (const Entry& e : s.entries) {
      auto [it, fresh] = shapes.emplace(e.name, e.global_shape);
      if (!fresh && it->second != e.global_shape)
        reader.fail("tensor '" + e.name + "' has a global shape differing from another shard's");
    }
    shards.push_back(std::move(s));
  }
  remove_strays(dir, world);
  // The manifest is the commit point; `latest` follows only once it is durable.
  write_file_atomic(join(dir, kManifest), manifest_yaml(step, shards, state, config_yaml));
  fsync_dir(root);  // the step directory's own entry must be durable before `latest` names it
  write_file_atomic(join(root, kLatest), step_dir_name(step) + "\n");
  prune(root, step, keep_last);
}

std::optional<std::string> find_latest(const std::string& root) {
  std::ifstream in(join(root, kLatest));
  std::string name;
  if (in >> name && parse_step_dir(name) && fs::exists(fs::path(root) / name / kManifest))
    return join(root, name);
  // `latest` lost or pointing at a pruned directory: any committed directory is complete.
  for (const StepDir& d : list_step_dirs(root))
    if (d.committed) return d.path.string();
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// CheckpointReader

namespace {

struct Piece {  // one entry of one shard holding part of a tensor
  size_t shard;
  const Entry* entry;
  int64_t begin() const { return entry->global_offset; }
  int64_t end() const { return entry->global_offset + entry->numel; }
};

struct TensorInfo {
  std::vector<int64_t> shape;
  std::vector<Piece> pieces;  // ascending global offset
};

std::string resolve_step_dir(const std::string& arg) {
  if (fs::exists(fs::path(arg) / kManifest)) return arg;
  if (!fs::is_directory(arg)) throw InputError(arg + ": checkpoint directory does not exist");
  if (auto d = find_latest(arg)) return *d;
  throw InputError(join(arg, kManifest) + ": missing (expected a committed checkpoint step " +
                   "directory, or a checkpoint root whose 'latest' names one)");
}

}  // namespace

struct CheckpointReader::Impl {
  std::string dir, manifest;
  int64_t step = 0;
  std::string config;
  std::map<std::string, std::string> state;
  std::vector<Shard> shards;
  std::map<std::string, TensorInfo> tensors;
  mutable std::mutex mu;  // guards `verified`; reads may come from several threads
  mutable std::vector<bool> verified;

  void load();
  void index_tensors();
  void ensure_verified(size_t shard) const;
  void copy(const Piece& p, int64_t begin, int64_t end, float* dst) const;
};

void CheckpointReader::Impl::load() {
  const YamlReader r(manifest);
  const YAML::Node n = r.load();
  if (r.string(n, "format") != kCheckpointFormat)
    r.fail(std::string("expected format ") + kCheckpointFormat);
  step = r.integer(n, "step", 0);
  const int64_t world = r.integer(n, "world", 1, std::numeric_limits<int>::max());
  const YAML::Node st = r.field(n, "state");
  if (!st.IsMap()) r.fail("key 'state': expected a map");
  for (const auto& kv : st) {
    if (!kv.first.IsScalar() || !kv.second.IsScalar()) r.fail("key 'state': expected strings");
    state[kv.first.Scalar()] = kv.second.Scalar();
  }
  config = r.string(n, "config");
  const YAML::Node list = r.field(n, "shards");
  if (!list.IsSequence() || static_cast<int64_t>(list.size()) != world)
    r.fail("key 'shards': expected " + std::to_string(world) + " shards");
  for (size_t i = 0; i < list.size(); ++i) {
    shards.push_back(parse_shard(r, list[i]));
    if (shards.back().rank != static_cast<int>(i)) r.fail("shards out of rank order");
  }
  verified.assign(shards.size(), false);
  index_tensors();
}

void CheckpointReader::Impl::index_tensors() {
  for (size_t i = 0; i < shards.size(); ++i) {
    for (const Entry& e : shards[i].entries) {
      auto [it, fresh] = tensors.try_emplace(e.name, TensorInfo{e.global_shape, {}});
      if (!fresh && it->second.shape != e.global_shape)
        throw InputError(manifest + ": tensor '" + e.name + "' has inconsistent global shapes");
      it->second.pieces.push_back({i, &e});
    }
  }
  for (auto& [name, t] : tensors)
    std::sort(t.pieces.begin(), t.pieces.end(),
              [](const Piece& a, const Piece& b) { return a.begin() < b.begin(); });
}

void CheckpointReader::Impl::ensure_verified(size_t shard) const {
  std::lock_guard<std::mutex> lock(mu);
  if (verified[shard]) return;
  verify_shard(join(dir, shards[shard].file), shards[shard]);
  verified[shard] = true;
}

// Elements [begin, end) of the tensor, all inside piece p, into dst.
void CheckpointReader::Impl::copy(const Piece& p, int64_t begin, int64_t end, float* dst) const {
  ensure_verified(p.shard);
  const std::string path = join(dir, shards[p.shard].file);
  Fd fd(path);
  const int64_t at = p.entry->offset + (begin - p.begin()) * static_cast<int64_t>(sizeof(float));
  if (fd.get() < 0 ||
      !pread_all(fd.get(), dst, static_cast<size_t>(end - begin) * sizeof(float), at))
    throw InputError(path + ": cannot read checkpoint shard (changed after verification?)");
}

CheckpointReader::CheckpointReader(const std::string& step_dir_or_root)
    : impl_(std::make_unique<Impl>()) {
  impl_->dir = resolve_step_dir(step_dir_or_root);
  impl_->manifest = join(impl_->dir, kManifest);
  impl_->load();
}

CheckpointReader::~CheckpointReader() = default;
CheckpointReader::CheckpointReader(CheckpointReader&&) noexcept = default;
CheckpointReader& CheckpointReader::operator=(CheckpointReader&&) noexcept = default;

const std::string& CheckpointReader::dir() const { return impl_->dir; }
int64_t CheckpointReader::step() const { return impl_->step; }
int CheckpointReader::world() const { return static_cast<int>(impl_->shards.size()); }
const std::string& CheckpointReader::config_yaml() const { return impl_->config; }
const std::map<std::string, std::string>& CheckpointReader::states() const { return impl_->state; }
bool CheckpointReader::has_state(const std::string& key) const {
  return impl_->state.count(key) > 0;
}

std::string CheckpointReader::state(const std::string& key) const {
  auto it = impl_->state.find(key);
  if (it == impl_->state.end())
    throw InputError(impl_->manifest + ": no state '" + key + "' in the checkpoint");
  return it->second;
}

bool CheckpointReader::has(const std::string& name) const { return impl_->tensors.count(name) > 0; }

std::vector<std::string> CheckpointReader::tensor_names() const {
  std::vector<std::string> out;
  for (const auto& [name, t] : impl_->tensors) out.push_back(name);
  return out;
}

std::vector<int64_t> CheckpointReader::global_shape(const std::string& name) const {
  auto it = impl_->tensors.find(name);
  if (it == impl_->tensors.end())
    throw InputError(impl_->manifest + ": no tensor '" + name + "' in the checkpoint");
  return it->second.shape;
}

int64_t CheckpointReader::numel(const std::string& name) const {
  return product(global_shape(name));
}

void CheckpointReader::read(const std::string& name, int64_t global_offset, int64_t n,
                            float* dst) const {
  const std::vector<int64_t> shape = global_shape(name);  // throws if unknown
  const int64_t end = global_offset + n;
  if (global_offset < 0 || n < 0 || end > product(shape))
    throw InputError(impl_->manifest + ": elements [" + std::to_string(global_offset) + ", " +
                     std::to_string(end) + ") are outside tensor '" + name + "' (" +
                     std::to_string(product(shape)) + " elements)");
  const std::vector<Piece>& pieces = impl_->tensors.at(name).pieces;
  // Greedy interval cover: at each position take the piece reaching furthest, so replicated
  // slices (several ranks holding the same elements) are read once.
  for (int64_t pos = global_offset; pos < end;) {
    const Piece* best = nullptr;
    for (const Piece& p : pieces)
      if (p.begin() <= pos && p.end() > pos && (!best || p.end() > best->end())) best = &p;
    if (!best)
      throw InputError(impl_->dir + ": tensor '" + name + "' element " + std::to_string(pos) +
                       " is in no shard of the checkpoint");
    const int64_t stop = std::min(end, best->end());
    impl_->copy(*best, pos, stop, dst + (pos - global_offset));
    pos = stop;
  }
}

std::vector<float> CheckpointReader::read(const std::string& name) const {
  std::vector<float> out(static_cast<size_t>(numel(name)));
  read(name, 0, static_cast<int64_t>(out.size()), out.data());
  return out;
}

}  // namespace strata
