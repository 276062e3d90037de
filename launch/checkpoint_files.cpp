#include "launch/checkpoint_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/log.h"
#include "launch/checkpoint.h"

namespace strata {
namespace fs = std::filesystem;

namespace {

constexpr const char* kManifest = "manifest.yaml";

std::string strip_trailing_slashes(std::string p) {
  // "step_00000010/" would make open() resolve a final symbolic link despite O_NOFOLLOW.
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

std::string file_kind(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a file";
}

std::optional<int64_t> parse_step_dir_name(const std::string& name) {
  if (name.size() <= 5 || name.compare(0, 5, "step_") != 0 || name.size() > 5 + 18)
    return std::nullopt;
  for (size_t i = 5; i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
  return std::stoll(name.substr(5));
}

std::optional<mode_t> entry_mode(const std::string& path) {
  struct stat st {};
  if (::lstat(strip_trailing_slashes(path).c_str(), &st) != 0) return std::nullopt;
  return st.st_mode;
}

std::optional<UniqueFd> try_open_step_dir(const std::string& path) {
  const std::string p = strip_trailing_slashes(path);
  UniqueFd fd(::open(p.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() >= 0) return fd;
  if (errno == ENOENT) return std::nullopt;
  const int err = errno;
  const auto mode = entry_mode(p);
  if (mode && S_ISLNK(*mode))
    throw InputError(p + ": is a symbolic link; a checkpoint step directory must be a real " +
                     "directory inside the checkpoint root (copy it there instead of linking)");
  if (mode && !S_ISDIR(*mode))
    throw InputError(p + ": is " + file_kind(*mode) + ", expected a checkpoint step directory");
  throw InputError(p + ": cannot open checkpoint step directory: " + std::strerror(err));
}

std::optional<UniqueFd> try_open_regular(int dir_fd, const std::string& name,
                                         const std::string& shown, const std::string& what,
                                         struct stat* st_out) {
  // O_NONBLOCK: opening a FIFO without a writer (or some devices) would otherwise wait forever,
  // before any check could run; O_NOFOLLOW: a final symbolic link fails with ELOOP.
  UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return std::nullopt;
    if (errno == ELOOP)
      throw InputError(shown + ": is a symbolic link, expected the " + what +
                       " itself (links inside a checkpoint are refused)");
    throw InputError(shown + ": cannot open " + what + ": " + errno_text());
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw InputError(shown + ": cannot stat " + what);
  if (!S_ISREG(st.st_mode))
    throw InputError(shown + ": is " + file_kind(st.st_mode) + ", not a regular file (expected " +
                     "the " + what + ")");
  // Regular files never block, but reads on them should not carry O_NONBLOCK semantics either.
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0)
    throw InputError(shown + ": cannot set " + what + " blocking: " + errno_text());
  if (st_out) *st_out = st;
  return fd;
}

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

std::optional<std::string> try_read_regular(int dir_fd, const std::string& name,
                                            const std::string& shown, const std::string& what,
                                            size_t max_bytes) {
  struct stat st {};
  auto fd = try_open_regular(dir_fd, name, shown, what, &st);
  if (!fd) return std::nullopt;
  if (st.st_size < 0 || static_cast<uint64_t>(st.st_size) > max_bytes)
    throw InputError(shown + ": " + std::to_string(st.st_size) + " bytes, more than a " + what +
                     " can be (" + std::to_string(max_bytes) + ")");
  std::string text(static_cast<size_t>(st.st_size), '\0');
  if (!pread_all(fd->get(), text.data(), text.size(), 0))
    throw InputError(shown + ": cannot read " + what + " (changed while being read?)");
  return text;
}

namespace {
std::function<void(const std::string&)>& prune_hook_slot() {
  static std::function<void(const std::string&)> hook;
  return hook;
}
}  // namespace

void set_prune_hook(std::function<void(const std::string&)> hook) {
  prune_hook_slot() = std::move(hook);
}
const std::function<void(const std::string&)>& prune_hook() { return prune_hook_slot(); }

void remove_step_dir(const std::string& dir,
                     const std::function<void(const std::string&)>& before_remove) {
  auto warn = [&](const std::string& p) {
    log_warn("checkpoint: cannot remove " + p + ": " + errno_text());
  };
  const auto mode = entry_mode(dir);
  if (!mode) return;
  if (!S_ISDIR(*mode)) {
    log_warn("checkpoint: not pruning " + dir + ": it is " + file_kind(*mode));
    return;
  }
  // 1. Uncommit, durably: a crash from here on leaves a directory without a manifest, which
  //    every reader ignores, never a manifest naming shards that are gone.
  const std::string manifest = (fs::path(dir) / kManifest).string();
  if (entry_mode(manifest)) {
    if (before_remove) before_remove(manifest);
    if (::unlink(manifest.c_str()) != 0 && errno != ENOENT) return warn(manifest);
    fsync_dir(dir);
  }
  // 2. The rest: plain files written by the checkpoint code (a stray subdirectory is removed
  //    without following links, as remove_all does).
  std::vector<fs::path> rest;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) rest.push_back(e.path());
  for (const fs::path& p : rest) {
    if (before_remove) before_remove(p.string());
    fs::remove_all(p, ec);
    if (ec) log_warn("checkpoint: cannot remove " + p.string() + ": " + ec.message());
  }
  if (before_remove) before_remove(dir);
  if (::rmdir(dir.c_str()) != 0) warn(dir);
}

namespace {

// Every entry of a step directory must be a regular file (shards, indexes, the manifest, temp
// files of an aborted save).
void check_step_dir_entries(const std::string& where, const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const auto mode = entry_mode(e.path().string());
    if (mode && !S_ISREG(*mode))
      throw InputError(where + e.path().string() + " is " + file_kind(*mode) +
                       ", expected a regular checkpoint file (links, FIFOs and devices inside a " +
                       "checkpoint are refused)");
  }
}

}  // namespace

void check_checkpoint_root_writable(const std::string& root) {
  const std::string where = "checkpoint.dir: ";
  std::error_code ec;
  // The root may be a symbolic link to a directory: stat, not lstat.
  struct stat st {};
  if (::stat(root.c_str(), &st) != 0) {
    fs::create_directories(root, ec);
    if (ec)
      throw InputError(where + root + ": cannot create the checkpoint directory: " + ec.message());
    if (::stat(root.c_str(), &st) != 0)
      throw InputError(where + root + ": cannot stat: " + errno_text());
  }
  if (!S_ISDIR(st.st_mode))
    throw InputError(where + root + " is " + file_kind(st.st_mode) +
                     ", expected a directory for the checkpoints");
  // access() answers for this process's credentials and fails with EROFS on a read-only mount,
  // without touching the directory (a probe file would change its mtime under a run that must
  // leave it as it was).
  if (::access(root.c_str(), W_OK | X_OK) != 0)
    throw InputError(where + root + " is not writable: " + errno_text());
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string(), path = e.path().string();
    const auto mode = entry_mode(path);
    if (!mode) continue;  // removed meanwhile
    if (name == "latest" && !S_ISREG(*mode))
      throw InputError(where + path + " is " + file_kind(*mode) +
                       ", expected a regular file naming the newest step directory");
    if (!parse_step_dir_name(name)) continue;
    if (!S_ISDIR(*mode))
      throw InputError(where + path + " is " + file_kind(*mode) +
                       ", expected a real checkpoint step directory (the checkpoint root may be " +
                       "a symbolic link, nothing inside it)");
    check_step_dir_entries(where, e.path());
  }
  if (ec) throw InputError(where + root + ": cannot list: " + ec.message());
}

}  // namespace strata
