// The swap files' names and the clean-up of those left by processes that are gone
// (offload/tier.h).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <filesystem>
#include <string>

#include "core/log.h"
#include "offload/tier.h"

namespace strata {

namespace fs = std::filesystem;

std::string swap_file_path(const std::string& dir, int rank) {
  static std::atomic<int> seq{0};
  const int n = seq++;
  std::string name = "strata_swap_";
  name += std::to_string(getpid());
  name += "_r";
  name += std::to_string(rank);
  if (n) {
    name += '_';
    name += std::to_string(n);
  }
  name += ".bin";
  return (fs::path(dir) / name).string();
}

int remove_stale_swap_files(const std::string& dir) {
  // Only files that match our naming are considered; a PID from another PID namespace sharing
  // the directory would look dead, so keep offload.dir per container (as /tmp usually is).
  static const std::string prefix = "strata_swap_";
  int removed = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(prefix) || !name.ends_with(".bin")) continue;
    long pid = 0;
    const char* b = name.data() + prefix.size();
    const auto [end, perr] = std::from_chars(b, name.data() + name.size(), pid);
    if (perr != std::errc() || end == b || *end != '_' || pid <= 0) continue;
    if (pid == getpid()) continue;
    if (kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive (or not ours)
    std::error_code rec;
    if (fs::remove(entry.path(), rec)) {
      ++removed;
      log_info("removed stale swap file " + entry.path().string() + " (process " +
               std::to_string(pid) + " is gone)");
    }
  }
  return removed;
}

}  // namespace strata
