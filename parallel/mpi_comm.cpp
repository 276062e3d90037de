#include "parallel/mpi_comm.h"

#include <climits>
#include <vector>

#include "core/error.h"
#include "parallel/mpi_scaled_rows.h"
#include "parallel/mpi_watchdog.h"
#include "parallel/watchdog.h"

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

// One MPI_Request; wait() goes through the watchdog's poll loop. A receive checks the element
// count it got, as the blocking recv does.
class MpiRequest final : public CommRequest {
 public:
  MpiRequest(MPI_Request req, const char* op, std::string where, FlightRecord rec,
             int expected_floats = -1)
      : req_(req),
        op_(op),
        where_(std::move(where)),
        rec_(std::move(rec)),
        expected_(expected_floats) {}
  // No destructor work: CommHandle always waits, and finish() nulls the request even on failure
  // (MPI forbids MPI_Request_free on a nonblocking collective's request). A request abandoned by
  // a timeout stays with MPI: the process is on its way out.
  void wait() override {
    MPI_Status st;
    const int rc = mpi_wait_all(1, &req_, &st, rec_);
    finish(rc, st);
  }
  bool test() override {
    int flag = 0;
    MPI_Status st;
    const int rc = MPI_Test(&req_, &flag, &st);
    if (rc != MPI_SUCCESS || flag) {
      Watchdog::instance().recorder().complete(rec_.id);
      finish(rc, st);
    }
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
  FlightRecord rec_;
  int expected_;
};

// The members of `comm` as world ranks (local: no communication).
std::shared_ptr<const CommGroup> make_group(MPI_Comm comm, std::string axis, int rank, int size) {
  auto g = std::make_shared<CommGroup>();
  g->axis = std::move(axis);
  g->rank = rank;
  g->world_ranks.resize(static_cast<size_t>(size));
  std::vector<int> mine(static_cast<size_t>(size));
  for (int i = 0; i < size; ++i) mine[static_cast<size_t>(i)] = i;
  MPI_Group cg = MPI_GROUP_NULL, wg = MPI_GROUP_NULL;
  if (MPI_Comm_group(comm, &cg) != MPI_SUCCESS ||
      MPI_Comm_group(MPI_COMM_WORLD, &wg) != MPI_SUCCESS ||
      MPI_Group_translate_ranks(cg, size, mine.data(), wg, g->world_ranks.data()) != MPI_SUCCESS)
    g->world_ranks = mine;
  if (cg != MPI_GROUP_NULL) MPI_Group_free(&cg);
  if (wg != MPI_GROUP_NULL) MPI_Group_free(&wg);
  return g;
}

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
  group_ = make_group(comm_, this->axis(), rank_, size_);
}

std::unique_ptr<MpiComm> MpiComm::world(std::string axis) {
  MPI_Comm dup = MPI_COMM_NULL;
  const int rc = MPI_Comm_dup(MPI_COMM_WORLD, &dup);
  if (rc != MPI_SUCCESS) throw StrataError(mpi_error_message(rc, "MPI_Comm_dup", "world"));
  return std::make_unique<MpiComm>(dup, std::move(axis));
}

MpiComm::~MpiComm() {
  // After MPI_Finalize no MPI call is legal; the handle goes with the process. A communicator
  // with an operation abandoned by the watchdog is left to MPI too (see CommGroup::abandoned).
  if (group_ && group_->abandoned) return;
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

FlightRecord MpiComm::record(const char* op, int64_t bytes, int peer) {
  Watchdog& wd = Watchdog::instance();
  FlightRecord r;
  r.seq = ++seq_;
  r.op = op;
  r.group = group_;
  r.peer = peer;
  r.bytes = bytes;
  r.step = wd.step();
  r.phase = watch_phase_name(wd.phase());
  r.id = wd.recorder().begin(r);
  return r;
}

void MpiComm::wait(int n, MPI_Request* reqs, MPI_Status* statuses, const FlightRecord& rec,
                   const char* mpi_op) {
  check(mpi_wait_all(n, reqs, statuses, rec), mpi_op);
}

void MpiComm::check_received(const MPI_Status& st, int expected, int src,
                             const char* mpi_op) const {
  int got = 0;
  MPI_Get_count(&st, MPI_FLOAT, &got);
  if (got != expected)
    throw StrataError(std::string(mpi_op) + " on " + describe() + ": expected " +
                      std::to_string(expected) + " floats from rank " + std::to_string(src) +
                      ", received " + std::to_string(got));
}

void MpiComm::do_all_reduce(void* buf, int64_t n, CommType t, ReduceOp op) {
  const FlightRecord rec = record("all_reduce", n * comm_type_size(t));
  MPI_Request req;
  check(MPI_Iallreduce(MPI_IN_PLACE, buf, count(n, "MPI_Allreduce"), mpi_type(t), mpi_op(op), comm_,
                       &req),
        "MPI_Iallreduce");
  wait(1, &req, MPI_STATUSES_IGNORE, rec, "MPI_Allreduce");
}

void MpiComm::do_reduce_scatter_sum(const float* send, float* recv, int64_t n) {
  count(n * size_, "MPI_Reduce_scatter_block");
  const FlightRecord rec = record("reduce_scatter", n * size_ * 4);
  MPI_Request req;
  check(MPI_Ireduce_scatter_block(send, recv, static_cast<int>(n), MPI_FLOAT, MPI_SUM, comm_, &req),
        "MPI_Ireduce_scatter_block");
  wait(1, &req, MPI_STATUSES_IGNORE, rec, "MPI_Reduce_scatter_block");
}

void MpiComm::do_all_gather(const float* send, float* recv, int64_t n) {
  count(n * size_, "MPI_Allgather");
  const FlightRecord rec = record("all_gather", n * 4);
  const bool in_place = send == recv + static_cast<int64_t>(rank_) * n;
  MPI_Request req;
  check(MPI_Iallgather(in_place ? MPI_IN_PLACE : send, static_cast<int>(n), MPI_FLOAT, recv,
                       static_cast<int>(n), MPI_FLOAT, comm_, &req),
        "MPI_Iallgather");
  wait(1, &req, MPI_STATUSES_IGNORE, rec, "MPI_Allgather");
}

void MpiComm::do_broadcast(void* buf, int64_t bytes, int root) {
  const FlightRecord rec = record("broadcast", bytes, root);
  MPI_Request req;
  check(MPI_Ibcast(buf, count(bytes, "MPI_Bcast"), MPI_BYTE, root, comm_, &req), "MPI_Ibcast");
  wait(1, &req, MPI_STATUSES_IGNORE, rec, "MPI_Bcast");
}

void MpiComm::do_barrier() {
  const FlightRecord rec = record("barrier", 0);
  MPI_Request req;
  check(MPI_Ibarrier(comm_, &req), "MPI_Ibarrier");
  wait(1, &req, MPI_STATUSES_IGNORE, rec, "MPI_Barrier");
}

void MpiComm::do_send(const float* buf, int64_t n, int dst, int tag) {
  const FlightRecord rec = record("send", n * 4, dst);
  MPI_Request req;
  check(MPI_Isend(buf, count(n, "MPI_Send"), MPI_FLOAT, dst, tag, comm_, &req), "MPI_Isend");
  wait(1, &req, MPI_STATUSES_IGNORE, rec, "MPI_Send");
}

void MpiComm::do_recv(float* buf, int64_t n, int src, int tag) {
  const FlightRecord rec = record("recv", n * 4, src);
  const int expected = count(n, "MPI_Recv");
  MPI_Request req;
  MPI_Status st;
  check(MPI_Irecv(buf, expected, MPI_FLOAT, src, tag, comm_, &req), "MPI_Irecv");
  wait(1, &req, &st, rec, "MPI_Recv");
  check_received(st, expected, src, "MPI_Recv");
}

void MpiComm::do_send_recv(const float* send_buf, int64_t send_n, int dst, float* recv_buf,
                           int64_t recv_n, int src, int tag) {
  // One record for the pair; its peer is the rank this one waits to hear from.
  const FlightRecord rec = record("send_recv", send_n * 4, src);
  const int expected = count(recv_n, "MPI_Sendrecv");
  MPI_Request reqs[2];
  MPI_Status st[2];
  check(MPI_Irecv(recv_buf, expected, MPI_FLOAT, src, tag, comm_, &reqs[0]), "MPI_Irecv");
  check(MPI_Isend(send_buf, count(send_n, "MPI_Sendrecv"), MPI_FLOAT, dst, tag, comm_, &reqs[1]),
        "MPI_Isend");
  wait(2, reqs, st, rec, "MPI_Sendrecv");
  check_received(st[0], expected, src, "MPI_Sendrecv");
}

CommHandle MpiComm::do_iall_reduce_sum(float* buf, int64_t n) {
  FlightRecord rec = record("iall_reduce", n * 4);
  MPI_Request req;
  check(MPI_Iallreduce(MPI_IN_PLACE, buf, count(n, "MPI_Iallreduce"), MPI_FLOAT, MPI_SUM, comm_,
                       &req),
        "MPI_Iallreduce");
  return CommHandle(
      std::make_unique<MpiRequest>(req, "MPI_Iallreduce", describe(), std::move(rec)));
}

CommHandle MpiComm::do_ireduce_scatter_sum(const float* send, float* recv, int64_t n) {
  count(n * size_, "MPI_Ireduce_scatter_block");
  FlightRecord rec = record("ireduce_scatter", n * size_ * 4);
  MPI_Request req;
  check(MPI_Ireduce_scatter_block(send, recv, static_cast<int>(n), MPI_FLOAT, MPI_SUM, comm_, &req),
        "MPI_Ireduce_scatter_block");
  return CommHandle(
      std::make_unique<MpiRequest>(req, "MPI_Ireduce_scatter_block", describe(), std::move(rec)));
}

CommHandle MpiComm::do_iall_gather(const float* send, float* recv, int64_t n) {
  count(n * size_, "MPI_Iallgather");
  FlightRecord rec = record("iall_gather", n * 4);
  const bool in_place = send == recv + static_cast<int64_t>(rank_) * n;
  MPI_Request req;
  check(MPI_Iallgather(in_place ? MPI_IN_PLACE : send, static_cast<int>(n), MPI_FLOAT, recv,
                       static_cast<int>(n), MPI_FLOAT, comm_, &req),
        "MPI_Iallgather");
  return CommHandle(
      std::make_unique<MpiRequest>(req, "MPI_Iallgather", describe(), std::move(rec)));
}

CommHandle MpiComm::do_isend(const float* buf, int64_t n, int dst, int tag) {
  FlightRecord rec = record("isend", n * 4, dst);
  MPI_Request req;
  check(MPI_Isend(buf, count(n, "MPI_Isend"), MPI_FLOAT, dst, tag, comm_, &req), "MPI_Isend");
  return CommHandle(std::make_unique<MpiRequest>(req, "MPI_Isend", describe(), std::move(rec)));
}

CommHandle MpiComm::do_irecv(float* buf, int64_t n, int src, int tag) {
  FlightRecord rec = record("irecv", n * 4, src);
  MPI_Request req;
  const int expected = count(n, "MPI_Irecv");
  check(MPI_Irecv(buf, expected, MPI_FLOAT, src, tag, comm_, &req), "MPI_Irecv");
  return CommHandle(
      std::make_unique<MpiRequest>(req, "MPI_Irecv", describe(), std::move(rec), expected));
}

CommHandle MpiComm::do_ibroadcast(float* buf, int64_t n, int root) {
  FlightRecord rec = record("ibroadcast", n * 4, root);
  MPI_Request req;
  check(MPI_Ibcast(buf, count(n, "MPI_Ibcast"), MPI_FLOAT, root, comm_, &req), "MPI_Ibcast");
  return CommHandle(std::make_unique<MpiRequest>(req, "MPI_Ibcast", describe(), std::move(rec)));
}

CommHandle MpiComm::do_iall_reduce_scaled_rows(float* buf, int64_t rows, int64_t row_len,
                                               int64_t scaled) {
  FlightRecord rec = record("iall_reduce_scaled_rows", rows * row_len * 4);
  const MpiScaledRows t = mpi_scaled_rows(row_len, scaled);
  MPI_Request req;
  check(
      MPI_Iallreduce(MPI_IN_PLACE, buf, count(rows, "MPI_Iallreduce"), t.record, t.op, comm_, &req),
      "MPI_Iallreduce");
  return CommHandle(
      std::make_unique<MpiRequest>(req, "MPI_Iallreduce", describe(), std::move(rec)));
}

std::unique_ptr<Comm> MpiComm::do_split(int color, int key, std::string axis) {
  // MPI_Comm_split has no nonblocking form: a barrier under the deadline first, so a rank that
  // never comes is named instead of hanging the split.
  do_barrier();
  MPI_Comm out = MPI_COMM_NULL;
  check(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &out), "MPI_Comm_split");
  if (out == MPI_COMM_NULL) return nullptr;
  return std::make_unique<MpiComm>(out, std::move(axis));
}

}  // namespace strata
