#include "parallel/mpi_scaled_rows.h"

#include <algorithm>
#include <limits>
#include <map>
#include <string>
#include <utility>

#include "core/error.h"
#include "core/scaled_rows.h"

namespace strata {

namespace {

struct Shape {
  int64_t row_len = 0, scaled = 0;
};

// Record datatype -> its shape: the user function is told only the datatype.
std::map<MPI_Datatype, Shape>& shapes() {
  static std::map<MPI_Datatype, Shape> m;
  return m;
}

void scaled_rows_op(void* in, void* inout, int* len, MPI_Datatype* type) {
  const auto it = shapes().find(*type);
  if (it == shapes().end()) return;  // cannot happen: only our datatypes reach this op
  combine_scaled_rows(static_cast<const float*>(in), static_cast<float*>(inout), *len,
                      it->second.row_len, it->second.scaled);
}

}  // namespace

MpiScaledRows mpi_scaled_rows(int64_t row_len, int64_t scaled) {
  static MPI_Op op = MPI_OP_NULL;
  static std::map<std::pair<int64_t, int64_t>, MPI_Datatype> types;
  if (op == MPI_OP_NULL && MPI_Op_create(&scaled_rows_op, /*commute=*/1, &op) != MPI_SUCCESS)
    throw StrataError("MPI_Op_create failed for the scaled-rows reduction");
  auto it = types.find({row_len, scaled});
  if (it == types.end()) {
    STRATA_CHECK(row_len <= std::numeric_limits<int>::max(),
                 "scaled-rows record of " + std::to_string(row_len) + " floats is too long");
    MPI_Datatype t = MPI_DATATYPE_NULL;
    if (MPI_Type_contiguous(static_cast<int>(row_len), MPI_FLOAT, &t) != MPI_SUCCESS ||
        MPI_Type_commit(&t) != MPI_SUCCESS)
      throw StrataError("MPI_Type_contiguous failed for a scaled-rows record of " +
                        std::to_string(row_len) + " floats");
    shapes()[t] = Shape{row_len, scaled};
    it = types.emplace(std::make_pair(row_len, scaled), t).first;
  }
  return {it->second, op};
}

}  // namespace strata
