#pragma once
// Shared by the multi-rank tests: the MPI environment that mpi_gtest_main.cpp creates.
#include "parallel/mpi_env.h"

namespace strata {

MpiEnv& test_mpi_env();

}  // namespace strata
