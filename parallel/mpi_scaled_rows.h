#pragma once
// The MPI datatype and user-defined reduction behind Comm::iall_reduce_scaled_rows: records of
// [m | k scaled values | plain values] combined in the log domain (parallel/comm.h). Created on
// first use per record shape and kept for the process (MPI frees them at MPI_Finalize). Main
// thread only, like every MPI call of this project.
#include <mpi.h>

#include <cstdint>

namespace strata {

struct MpiScaledRows {
  MPI_Datatype record = MPI_DATATYPE_NULL;  // row_len contiguous floats
  MPI_Op op = MPI_OP_NULL;                  // the log-domain combine
};

// Throws StrataError if MPI refuses to create the datatype or the operation.
MpiScaledRows mpi_scaled_rows(int64_t row_len, int64_t scaled);

}  // namespace strata
