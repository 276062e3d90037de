#include "core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "core/error.h"

namespace strata {

namespace {

[[noreturn]] void io_error(const std::string& what, const std::string& path) {
  throw StrataError(what + " " + path + ": " + std::strerror(errno));
}

std::string parent_dir(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), tmp_path_(path_ + ".tmp") {
  // Whatever holds the temp name (a killed writer's leftover, or a FIFO that would block open()
  // forever, or a link that would redirect the write) is removed, and O_EXCL creates a fresh
  // regular file: it never opens an existing one and never follows a link.
  ::unlink(tmp_path_.c_str());
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) io_error("cannot create", tmp_path_);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_path_.c_str());
  }
}

void AtomicFile::write(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {  // write() may be partial or interrupted
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) io_error("cannot write", tmp_path_);
    p += w;
    n -= static_cast<size_t>(w);
    size_ += w;
  }
}

void AtomicFile::write_zeros(size_t n) {
  static const char kZeros[256] = {};
  while (n > 0) {
    const size_t k = std::min(n, sizeof(kZeros));
    write(kZeros, k);
    n -= k;
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0) io_error("cannot fsync", tmp_path_);
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) {
    ::unlink(tmp_path_.c_str());
    io_error("cannot close", tmp_path_);
  }
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    ::unlink(tmp_path_.c_str());
    io_error("cannot rename to", path_);
  }
  fsync_dir(parent_dir(path_));
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile f(path);
  f.write(contents.data(), contents.size());
  f.commit();
}

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) io_error("cannot open directory", dir);
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) io_error("cannot fsync directory", dir);
}

}  // namespace strata
