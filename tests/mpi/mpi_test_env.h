#pragma once
// Shared by the multi-rank tests: the MPI environment that mpi_gtest_main.cpp creates.
#include <stdlib.h>

#include <cstring>
#include <string>

#include "parallel/comm.h"
#include "parallel/mpi_env.h"

namespace strata {

MpiEnv& test_mpi_env();

// A fresh directory every rank sees: made by rank 0 under /tmp, its name broadcast; "" if mkdtemp
// failed.
inline std::string shared_temp_dir(Comm& world, const std::string& prefix) {
  char path[256] = {};
  if (world.rank() == 0) {
    const std::string tmpl = "/tmp/" + prefix + "_XXXXXX";
    std::strncpy(path, tmpl.c_str(), sizeof path - 1);
    if (!mkdtemp(path)) path[0] = 0;
  }
  world.broadcast_bytes(path, sizeof path, 0);
  return path;
}

}  // namespace strata
