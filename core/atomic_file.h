#pragma once
// Crash-safe file writing shared by checkpoints, exports, configs and token shards.
#include <cstddef>
#include <cstdint>
#include <string>

namespace strata {

// Writes `path` through a temporary sibling (path + ".tmp") that is fsynced and renamed over
// `path` by commit(), then the directory is fsynced: a crash at any point leaves either the
// old file or the complete new one under the final name, never a torn one. I/O failures
// (disk full, permissions) throw StrataError naming the file.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();  // removes the temp file unless commit() succeeded
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write_zeros(size_t n);
  int64_t size() const { return size_; }  // bytes written so far
  void commit();

 private:
  std::string path_, tmp_path_;
  int fd_ = -1;
  int64_t size_ = 0;
};

// Whole-string convenience: AtomicFile, write, commit.
void write_file_atomic(const std::string& path, const std::string& contents);

// fsync a directory so that renames and creations inside it survive a crash.
void fsync_dir(const std::string& dir);

}  // namespace strata
