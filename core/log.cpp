#include "core/log.h"

#include <cstdio>

namespace strata {

static int g_rank = 0, g_world = 1;

void set_log_rank(int rank, int world) {
  g_rank = rank;
  g_world = world;
}

void log_info(const std::string& msg) {
  if (g_rank != 0) return;
  std::fprintf(stderr, "%s\n", msg.c_str());
  std::fflush(stderr);
}

void log_warn(const std::string& msg) {
  if (g_world > 1)
    std::fprintf(stderr, "[rank %d] warning: %s\n", g_rank, msg.c_str());
  else
    std::fprintf(stderr, "warning: %s\n", msg.c_str());
  std::fflush(stderr);
}

void log_all(const std::string& msg) {
  if (g_world > 1)
    std::fprintf(stderr, "[rank %d] %s\n", g_rank, msg.c_str());
  else
    std::fprintf(stderr, "%s\n", msg.c_str());
  std::fflush(stderr);
}

}  // namespace strata
