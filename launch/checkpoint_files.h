#pragma once
// File-system rules of a checkpoint, in one place: what may be opened, how, and how a step
// directory is removed. A checkpoint is data another user, a copy tool or a damaged disk may
// have changed, so nothing in it is trusted to be what its name says:
//
//   - every file (shard, shard index, manifest, `latest`) must be a regular file; it is opened
//     with O_NOFOLLOW | O_NONBLOCK, so a symbolic link fails at once and a FIFO or device never
//     blocks open(), then fstat decides (S_ISREG) on the very file that was opened, so nothing
//     can be swapped in between a check and the open;
//   - a step directory must be a real directory, opened with O_DIRECTORY | O_NOFOLLOW, and its
//     files are opened relative to that descriptor (openat): a step directory replaced by a link
//     after it was opened is not followed either;
//   - the checkpoint root itself may be a symbolic link (checkpoint.dir pointing at scratch
//     storage through a link is common); nothing inside it may be.
//
// Every refusal is an InputError naming the path and what was expected.
#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace strata {

// An owned file descriptor (closed on destruction).
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd();
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

// "a FIFO", "a directory", "a symbolic link", ... for messages.
std::string file_kind(mode_t mode);

// Opens the step directory `path` (a trailing slash is ignored): it must be a real directory,
// not a symbolic link. nullopt when it does not exist.
std::optional<UniqueFd> try_open_step_dir(const std::string& path);

// Opens `name` (relative to dir_fd, or a path with AT_FDCWD) read-only as a regular file, with
// *st filled from fstat of the opened file. nullopt when it does not exist; an InputError naming
// `shown` when it is a symbolic link, not a regular file, or cannot be opened. `what` says what
// it should be ("checkpoint shard").
std::optional<UniqueFd> try_open_regular(int dir_fd, const std::string& name,
                                         const std::string& shown, const std::string& what,
                                         struct stat* st = nullptr);

// The whole contents of a small regular file opened as try_open_regular does; nullopt when it
// does not exist; an InputError when it is larger than max_bytes or cannot be read.
std::optional<std::string> try_read_regular(int dir_fd, const std::string& name,
                                            const std::string& shown, const std::string& what,
                                            size_t max_bytes);

// pread exactly n bytes; false on EOF or error.
bool pread_all(int fd, void* dst, size_t n, int64_t offset);

// The step of a step directory name ("step_00000010" -> 10; at least one, at most 18 digits);
// nullopt for any other name.
std::optional<int64_t> parse_step_dir_name(const std::string& name);

// What lstat says `path` is (symbolic links not followed); nullopt when it does not exist.
std::optional<mode_t> entry_mode(const std::string& path);

// Removes a step directory so that a crash at any moment leaves either a committed, complete
// checkpoint or one that is not committed: the manifest goes first and that removal is made
// durable (directory fsync) before any shard is touched. A directory that is a symbolic link is
// not followed (only warned about). `before_remove` (tests: simulate a crash by throwing) is
// called with each path just before it is removed. Failures are warnings: pruning never fails a
// save that is already committed.
void remove_step_dir(const std::string& dir,
                     const std::function<void(const std::string&)>& before_remove = {});

// Tests only: the before_remove hook pruning (commit_checkpoint's keep_last) passes to
// remove_step_dir; empty by default.
void set_prune_hook(std::function<void(const std::string&)> hook);
const std::function<void(const std::string&)>& prune_hook();

}  // namespace strata
