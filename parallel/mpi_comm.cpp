#include "parallel/mpi_comm.h"

#include <climits>

#include "core/error.h"

namespace strata {

namespace {

MPI_Datatype mpi_type(CommType t) {
  switch (t) {
    case CommType::f32:
      return MPI_FLOAT;
    case CommType::f64:
      return MPI_DOUBLE;
    case CommType::i64:
      return MPI_INT64_T;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::sum ? MPI_SUM : MPI_MAX; }

bool mpi_finalized() {
  int done = 0;
  MPI_Finalized(&done);
  return done != 0;
}

// One MPI_Request. A receive checks the element count it got, as the blocking recv does.
class MpiRequest final : public CommRequest {
 public:
  MpiRequest(MPI_Request req, const char* op, std::string where, int expected_floats = -1)
      : req_(req), op_(op), where_(std::move(where)), expected_(expected_floats) {}
  // No destructor work: CommHandle always waits, and finish() nulls the request even on failure
  // (MPI forbids MPI_Request_free on a nonblocking collective's request).
  void wait() override {
    MPI_Status st;
    const int rc = MPI_Wait(&req_, &st);
    finish(rc, st);
  }
  bool test() override {
    int flag = 0;
    MPI_Status st;
    const int rc = MPI_Test(&req_, &flag, &st);
    if (rc != MPI_SUCCESS || flag) finish(rc, st);
    return flag != 0;
  }

 private:
  void finish(int rc, const MPI_Status& st) {
    req_ = MPI_REQUEST_NULL;
    if (rc != MPI_SUCCESS) throw StrataError(mpi_error_message(rc, op_, where_));
    if (expected_ >= 0) {
      int got = 0;
      MPI_Get_count(&st, MPI_FLOAT, &got);
      if (got != expected_)
        throw StrataError(std::string(op_) + " on " + where_ + ": expected " +
                          std::to_string(expected_) + " floats, received " + std::to_string(got));
    }
  }

  MPI_Request req_;
  const char* op_;
  std::string where_;
  int expected_;
};

}  // namespace

std::string mpi_error_message(int rc, const std::string& op, const std::string& where) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
  return op + " failed on " + where + ": " +
         (len > 0 ? std::string(msg, static_cast<size_t>(len)) : "MPI error " + std::to_string(rc));
}

MpiComm::MpiComm(MPI_Comm comm, std::string axis) : Comm(std::move(axis)), comm_(comm) {
  check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
}

std::unique_ptr<MpiComm> MpiComm::world(std::string axis) {
  MPI_Comm dup = MPI_COMM_NULL;
  const int rc = MPI_Comm_dup(MPI_COMM_WORLD, &dup);
  if (rc != MPI_SUCCESS) throw StrataError(mpi_error_message(rc, "MPI_Comm_dup", "world"));
  return std::make_unique<MpiComm>(dup, std::move(axis));
}

MpiComm::~MpiComm() {
  // After MPI_Finalize no MPI call is legal; the handle goes with the process.
  if (comm_ != MPI_COMM_NULL && comm_ != MPI_COMM_WORLD && !mpi_finalized()) MPI_Comm_free(&comm_);
}

void MpiComm::check(int rc, const char* op) const {
  if (rc != MPI_SUCCESS) throw StrataError(mpi_error_message(rc, op, describe()));
}

int MpiComm::count(int64_t n, const char* op) const {
  if (n > INT_MAX)
    throw StrataError(std::string(op) + " on " + describe() + ": " + std::to_string(n) +
                      " elements exceed MPI's int count; split the buffer");
  return static_cast<int>(n);
}

void MpiComm::do_all_reduce(void* buf, int64_t n, CommType t, ReduceOp op) {
  check(MPI_Allreduce(MPI_IN_PLACE, buf, count(n, "MPI_Allreduce"), mpi_type(t), mpi_op(op), comm_),
        "MPI_Allreduce");
}

void MpiComm::do_reduce_scatter_sum(const float* send, float* recv, int64_t n) {
  count(n * size_, "MPI_Reduce_scatter_block");
  check(MPI_Reduce_scatter_block(send, recv, static_cast<int>(n), MPI_FLOAT, MPI_SUM, comm_),
        "MPI_Reduce_scatter_block");
}

void MpiComm::do_all_gather(const float* send, float* recv, int64_t n) {
  count(n * size_, "MPI_Allgather");
  const bool in_place = send == recv + static_cast<int64_t>(rank_) * n;
  check(MPI_Allgather(in_place ? MPI_IN_PLACE : send, static_cast<int>(n), MPI_FLOAT, recv,
                      static_cast<int>(n), MPI_FLOAT, comm_),
        "MPI_Allgather");
}

void MpiComm::do_broadcast(void* buf, int64_t bytes, int root) {
  check(MPI_Bcast(buf, count(bytes, "MPI_Bcast"), MPI_BYTE, root, comm_), "MPI_Bcast");
}

void MpiComm::do_barrier() { check(MPI_Barrier(comm_), "MPI_Barrier"); }

void MpiComm::do_send(const float* buf, int64_t n, int dst, int tag) {
  check(MPI_Send(buf, count(n, "MPI_Send"), MPI_FLOAT, dst, tag, comm_), "MPI_Send");
}

void MpiComm::do_recv(float* buf, int64_t n, int src, int tag) {
  MPI_Status st;
  const int expected = count(n, "MPI_Recv");
  check(MPI_Recv(buf, expected, MPI_FLOAT, src, tag, comm_, &st), "MPI_Recv");
  int got = 0;
  MPI_Get_count(&st, MPI_FLOAT, &got);
  if (got != expected)
    throw StrataError("MPI_Recv on " + describe() + ": expected " + std::to_string(expected) +
                      " floats from rank " + std::to_string(src) + ", received " +
                      std::to_string(got));
}

void MpiComm::do_send_recv(const float* send_buf, int64_t send_n, int dst, float* recv_buf,
                           int64_t recv_n, int src, int tag) {
  MPI_Status st;
  const int expected = count(recv_n, "MPI_Sendrecv");
  check(MPI_Sendrecv(send_buf, count(send_n, "MPI_Sendrecv"), MPI_FLOAT, dst, tag, recv_buf,
                     expected, MPI_FLOAT, src, tag, comm_, &st),
        "MPI_Sendrecv");
  int got = 0;
  MPI_Get_count(&st, MPI_FLOAT, &got);
  if (got != expected)
    throw StrataError("MPI_Sendrecv on " + describe() + ": expected " + std::to_string(expected) +
                      " floats from rank " + std::to_string(src) + ", received " +
                      std::to_string(got));
}

CommHandle MpiComm::do_iall_reduce_sum(float* buf, int64_t n) {
  MPI_Request req;
  check(MPI_Iallreduce(MPI_IN_PLACE, buf, count(n, "MPI_Iallreduce"), MPI_FLOAT, MPI_SUM, comm_,
                       &req),
        "MPI_Iallreduce");
  return CommHandle(std::make_unique<MpiRequest>(req, "MPI_Iallreduce", describe()));
}

CommHandle MpiComm::do_ireduce_scatter_sum(const float* send, float* recv, int64_t n) {
  count(n * size_, "MPI_Ireduce_scatter_block");
  MPI_Request req;
  check(MPI_Ireduce_scatter_block(send, recv, static_cast<int>(n), MPI_FLOAT, MPI_SUM, comm_, &req),
        "MPI_Ireduce_scatter_block");
  return CommHandle(std::make_unique<MpiRequest>(req, "MPI_Ireduce_scatter_block", describe()));
}

CommHandle MpiComm::do_iall_gather(const float* send, float* recv, int64_t n) {
  count(n * size_, "MPI_Iallgather");
  const bool in_place = send == recv + static_cast<int64_t>(rank_) * n;
  MPI_Request req;
  check(MPI_Iallgather(in_place ? MPI_IN_PLACE : send, static_cast<int>(n), MPI_FLOAT, recv,
                       static_cast<int>(n), MPI_FLOAT, comm_, &req),
        "MPI_Iallgather");
  return CommHandle(std::make_unique<MpiRequest>(req, "MPI_Iallgather", describe()));
}

CommHandle MpiComm::do_isend(const float* buf, int64_t n, int dst, int tag) {
  MPI_Request req;
  check(MPI_Isend(buf, count(n, "MPI_Isend"), MPI_FLOAT, dst, tag, comm_, &req), "MPI_Isend");
  return CommHandle(std::make_unique<MpiRequest>(req, "MPI_Isend", describe()));
}

CommHandle MpiComm::do_irecv(float* buf, int64_t n, int src, int tag) {
  MPI_Request req;
  const int expected = count(n, "MPI_Irecv");
  check(MPI_Irecv(buf, expected, MPI_FLOAT, src, tag, comm_, &req), "MPI_Irecv");
  return CommHandle(std::make_unique<MpiRequest>(req, "MPI_Irecv", describe(), expected));
}

std::unique_ptr<Comm> MpiComm::do_split(int color, int key, std::string axis) {
  MPI_Comm out = MPI_COMM_NULL;
  check(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &out), "MPI_Comm_split");
  if (out == MPI_COMM_NULL) return nullptr;
  return std::make_unique<MpiComm>(out, std::move(axis));
}

}  // namespace strata
