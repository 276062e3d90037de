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
#include <limits>
#include <mutex>
#include <set>
#include <sstream>

#include "core/atomic_file.h"
#include "core/crc32c.h"
#include "core/error.h"
#include "core/log.h"
#include "core/stop.h"
#include "launch/checkpoint_files.h"

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
// A manifest lists every entry of every rank: ~150 bytes each, so 1 GiB is millions of entries;
// the cap only keeps a huge or sparse file in place of one from exhausting memory.
constexpr size_t kMaxYamlBytes = size_t{1} << 30;

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

  // Reads `name` relative to dir_fd (AT_FDCWD: file_ itself) as a regular file only: never
  // blocks on a FIFO, never follows a link (checkpoint_files.h).
  YAML::Node load(int dir_fd = AT_FDCWD, const std::string& name = "") const {
    const auto text = try_read_regular(dir_fd, name.empty() ? file_ : name, file_,
                                       "checkpoint " + what(), kMaxYamlBytes);
    if (!text) fail("missing (expected a checkpoint " + what() + ")");
    return parse(*text);
  }

  // The same on text already in memory (check_shard_index, CheckpointReader::from_manifest_text).
  YAML::Node parse(const std::string& text) const {
    return checked_map([&] { return YAML::Load(text); });
  }

  [[noreturn]] void fail(const std::string& why) const { throw InputError(file_ + ": " + why); }

  const YAML::Node field(const YAML::Node& n, const std::string& key) const {
    // Subscripting a scalar or a list throws a YAML exception that no caller would name.
    if (!n.IsMap()) fail("expected a map holding key '" + key + "'");
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
  template <class LoadNode>
  YAML::Node checked_map(LoadNode load_node) const {
    try {
      YAML::Node n = load_node();
      if (!n.IsMap()) fail("expected a YAML map");
      return n;
    } catch (const YAML::Exception& e) {
      fail(std::string("cannot parse: ") + e.what());
    }
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
  // Bounded so that offset + bytes() cannot overflow (parse_shard compares it to the file size).
  e.offset = r.integer(n, "offset", 0, std::numeric_limits<int64_t>::max() - e.bytes());
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
  std::set<std::string> names;
  for (size_t i = 0; i < entries.size(); ++i) {
    Entry e = parse_entry(r, entries[i]);
    // A writer stores each tensor once per rank (one contiguous owned range).
    if (!names.insert(e.name).second) r.fail("tensor '" + e.name + "' appears twice in " + s.file);
    // Written as offset > size - bytes: offset + bytes could overflow for a tampered offset.
    if (e.offset < end || e.offset > s.size - e.bytes())
      r.fail("entry '" + e.name + "' of " + s.file + ": byte range [" + std::to_string(e.offset) +
             ", " + std::to_string(e.offset + e.bytes()) + ") overlaps another entry or lies " +
             "outside the " + std::to_string(s.size) + "-byte file");
    end = e.offset + e.bytes();
    s.entries.push_back(std::move(e));
  }
  return s;
}

// One rank's index file, as commit_checkpoint accepts it: written for `step` by `rank`.
Shard parse_index(const YamlReader& r, const YAML::Node& n, int64_t step, int rank) {
  if (r.integer(n, "step", 0) != step) r.fail("written for a different step");
  Shard s = parse_shard(r, n);
  if (s.rank != rank) r.fail("written by rank " + std::to_string(s.rank));
  return s;
}

// ---------------------------------------------------------------------------------------------
// Step directories

// A manifest that exists in any form (even a link or a FIFO) commits its directory: readers
// then refuse it by name rather than silently skipping to an older step.
bool has_manifest(const fs::path& dir) {
  return entry_mode((dir / kManifest).string()).has_value();
}

struct StepDir {
  int64_t step;
  fs::path path;
  bool real;       // a directory, not a symbolic link or another kind of file
  bool committed;  // real and holding a manifest
};

// Entries named like step directories under root (whatever they are), newest first.
std::vector<StepDir> list_step_dirs(const std::string& root) {
  std::vector<StepDir> out;
  std::error_code ec;
  for (const auto& d : fs::directory_iterator(root, ec)) {
    const auto step = parse_step_dir_name(d.path().filename().string());
    if (!step) continue;
    const bool real = d.is_directory(ec) && !d.is_symlink(ec);
    out.push_back({*step, d.path(), real, real && has_manifest(d.path())});
  }
  std::sort(out.begin(), out.end(),
            [](const StepDir& a, const StepDir& b) { return a.step > b.step; });
  return out;
}

// Keeps the new step and the keep_last - 1 newest committed steps before it; removes aborted
// saves older than it. Newer directories (from a run that was resumed from an older
// checkpoint) are left alone: they are not this run's to judge.
void prune(const std::string& root, int64_t step, int64_t keep_last) {
  int64_t kept = 1;  // the new checkpoint
  for (const StepDir& d : list_step_dirs(root)) {
    if (d.step >= step || !d.real) continue;  // links and odd files are not ours to delete
    if (!d.committed) {
      remove_step_dir(d.path.string(), prune_hook());
    } else if (keep_last > 0 && kept >= keep_last) {
      remove_step_dir(d.path.string(), prune_hook());
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
  if (!has_manifest(dir)) return;
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

// A shard file of the step directory dir_fd, `path` naming it in errors: a regular file only.
UniqueFd open_shard(int dir_fd, const std::string& path, const Shard& s, struct stat* st) {
  auto fd = try_open_regular(dir_fd, s.file, path, "checkpoint shard", st);
  if (!fd) throw InputError(path + ": missing checkpoint shard");
  return std::move(*fd);
}

std::string hex(uint32_t x) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", x);
  return buf;
}

// One sequential pass over a shard file: size, every entry's crc, then the whole-file crc. A stop
// signal is honoured between chunks (a large shard takes seconds to hash). Returns the stat of
// the verified file, so later reads can check they open the same one.
struct stat verify_shard(int dir_fd, const std::string& path, const Shard& s) {
  struct stat st {};
  const UniqueFd fd = open_shard(dir_fd, path, s, &st);
  if (st.st_size != s.size)
    throw InputError(path + ": checkpoint shard is " + std::to_string(st.st_size) +
                     " bytes, the manifest expects " + std::to_string(s.size) +
                     " (truncated or overwritten)");
  std::vector<char> buf(kIoChunk);
  uint32_t file_crc = 0;
  int64_t pos = 0;
  // Hashes [pos, end) into the file crc and, when given, an entry crc.
  auto hash_to = [&](int64_t end, uint32_t* entry_crc) {
    while (pos < end) {
      throw_if_stop_requested("verifying checkpoint shard " + path);
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
  return st;
}

// The step directory `dir` of root, open: a real directory (checkpoint_files.h).
UniqueFd open_step_dir(const std::string& dir) {
  auto fd = try_open_step_dir(dir);
  if (!fd) throw InputError(dir + ": checkpoint step directory does not exist");
  return std::move(*fd);
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
  return has_manifest(fs::path(root) / step_dir_name(step));
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
  // Writing (or uncommitting) through a link would change another directory.
  open_step_dir(dir);
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
  const UniqueFd dir_fd = open_step_dir(dir);
  for (int r = 0; r < world; ++r) {
    const YamlReader reader(join(dir, shard_index_name(r)));
    Shard s = parse_index(reader, reader.load(dir_fd.get(), shard_index_name(r)), step, r);
    struct stat st {};
    const auto bin =
        try_open_regular(dir_fd.get(), s.file, join(dir, s.file), "checkpoint shard", &st);
    if (!bin || st.st_size != s.size)
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

void check_shard_index(const std::string& yaml_text, const std::string& source, int64_t step,
                       int rank) {
  const YamlReader reader(source);
  parse_index(reader, reader.parse(yaml_text), step, rank);
}

std::optional<std::string> find_latest(const std::string& root) {
  // The root may be a symbolic link (checkpoint_files.h); what it points at must be a directory.
  std::error_code ec;
  if (fs::exists(root, ec) && !fs::is_directory(root, ec))
    throw InputError(root + ": is not a directory (expected a checkpoint root)");
  const std::string latest = join(root, kLatest);
  const auto text = try_read_regular(AT_FDCWD, latest, latest, "checkpoint 'latest' file", 4096);
  std::istringstream in(text.value_or(""));
  std::string name;
  if (in >> name && parse_step_dir_name(name)) {
    // A link or another file named by `latest` is refused by name, not skipped: it is what a
    // resume would have loaded.
    const std::string dir = join(root, name);
    if (try_open_step_dir(dir) && has_manifest(dir)) return dir;
  }
  // `latest` lost or pointing at a pruned directory: any committed directory is complete.
  for (const StepDir& d : list_step_dirs(root)) {
    if (!d.real) try_open_step_dir(d.path.string());  // throws, naming the link or file
    if (d.committed) return d.path.string();
  }
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
  // reach[i]: the piece among pieces[0..i] that ends furthest, so the read cover is a binary
  // search per piece used (a tampered manifest with millions of pieces stays fast).
  std::vector<size_t> reach;
};

std::string resolve_step_dir(std::string arg) {
  while (arg.size() > 1 && arg.back() == '/') arg.pop_back();  // "step_00000010/" names the dir
  if (has_manifest(arg)) return arg;
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
  UniqueFd dir_fd;        // the step directory: its files are opened relative to it
  mutable std::mutex mu;  // guards `verified`; reads may come from several threads
  mutable std::vector<bool> verified;
  mutable std::vector<struct stat> verified_stat;  // the file each verification hashed

  void load(const YAML::Node& n);  // the manifest's root map; `manifest` names it in errors
  void index_tensors();
  void ensure_verified(size_t shard) const;
  void copy(const Piece& p, int64_t begin, int64_t end, float* dst) const;
};

void CheckpointReader::Impl::load(const YAML::Node& n) {
  const YamlReader r(manifest);
  if (r.string(n, "format") != kCheckpointFormat)
    r.fail(std::string("expected format ") + kCheckpointFormat);
  step = r.integer(n, "step", 0);
  // A manifest copied or renamed into another step's directory would resume at the wrong step.
  if (const auto named = parse_step_dir_name(fs::path(dir).filename().string());
      named && *named != step)
    r.fail("records step " + std::to_string(step) + " but its directory " + dir + " is step " +
           std::to_string(*named));
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
  verified_stat.assign(shards.size(), {});
  index_tensors();
}

void CheckpointReader::Impl::index_tensors() {
  for (size_t i = 0; i < shards.size(); ++i) {
    for (const Entry& e : shards[i].entries) {
      auto [it, fresh] = tensors.try_emplace(e.name, TensorInfo{e.global_shape, {}, {}});
      if (!fresh && it->second.shape != e.global_shape)
        throw InputError(manifest + ": tensor '" + e.name + "' has inconsistent global shapes");
      it->second.pieces.push_back({i, &e});
    }
  }
  for (auto& [name, t] : tensors) {
    std::sort(t.pieces.begin(), t.pieces.end(),
              [](const Piece& a, const Piece& b) { return a.begin() < b.begin(); });
    for (size_t i = 0; i < t.pieces.size(); ++i)
      t.reach.push_back(
          i > 0 && t.pieces[t.reach[i - 1]].end() >= t.pieces[i].end() ? t.reach[i - 1] : i);
  }
}

void CheckpointReader::Impl::ensure_verified(size_t shard) const {
  std::lock_guard<std::mutex> lock(mu);
  if (verified[shard]) return;
  const std::string path = join(dir, shards[shard].file);
  if (dir_fd.get() < 0) throw InputError(path + ": missing checkpoint shard");
  verified_stat[shard] = verify_shard(dir_fd.get(), path, shards[shard]);
  verified[shard] = true;
}

// Elements [begin, end) of the tensor, all inside piece p, into dst.
void CheckpointReader::Impl::copy(const Piece& p, int64_t begin, int64_t end, float* dst) const {
  ensure_verified(p.shard);
  const std::string path = join(dir, shards[p.shard].file);
  struct stat st {};
  const UniqueFd fd = open_shard(dir_fd.get(), path, shards[p.shard], &st);
  const struct stat& v = verified_stat[p.shard];  // written before verified[] was set, under mu
  if (st.st_dev != v.st_dev || st.st_ino != v.st_ino || st.st_size != v.st_size)
    throw InputError(path + ": checkpoint shard was replaced after it was verified");
  const int64_t at = p.entry->offset + (begin - p.begin()) * static_cast<int64_t>(sizeof(float));
  if (!pread_all(fd.get(), dst, static_cast<size_t>(end - begin) * sizeof(float), at))
    throw InputError(path + ": cannot read checkpoint shard (changed after verification?)");
}

CheckpointReader::CheckpointReader(const std::string& step_dir_or_root)
    : impl_(std::make_unique<Impl>()) {
  impl_->dir = resolve_step_dir(step_dir_or_root);
  impl_->manifest = join(impl_->dir, kManifest);
  impl_->dir_fd = open_step_dir(impl_->dir);
  impl_->load(YamlReader(impl_->manifest).load(impl_->dir_fd.get(), kManifest));
}

CheckpointReader::CheckpointReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CheckpointReader CheckpointReader::from_manifest_text(const std::string& yaml_text,
                                                      const std::string& step_dir) {
  auto impl = std::make_unique<Impl>();
  impl->dir = step_dir;
  impl->manifest = join(step_dir, kManifest);
  if (auto fd = try_open_step_dir(step_dir)) impl->dir_fd = std::move(*fd);  // else shards missing
  impl->load(YamlReader(impl->manifest).parse(yaml_text));
  return CheckpointReader(std::move(impl));
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
  const TensorInfo& t = impl_->tensors.at(name);
  // Greedy interval cover: at each position take the piece reaching furthest, so replicated
  // slices (several ranks holding the same elements) are read once.
  for (int64_t pos = global_offset; pos < end;) {
    throw_if_stop_requested("loading checkpoint " + impl_->dir);
    const auto after = std::upper_bound(t.pieces.begin(), t.pieces.end(), pos,
                                        [](int64_t x, const Piece& p) { return x < p.begin(); });
    const Piece* best = after == t.pieces.begin()
                            ? nullptr
                            : &t.pieces[t.reach[static_cast<size_t>(after - t.pieces.begin()) - 1]];
    if (best && best->end() <= pos) best = nullptr;
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
