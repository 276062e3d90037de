#include "parallel/comm.h"

#include <cstdint>
#include <functional>

#include "core/error.h"
#include "core/log.h"
#include "parallel/watchdog.h"

namespace strata {

namespace {

constexpr int64_t kF32 = sizeof(float);

// Whether [a, a+na) and [b, b+nb) share an element (std::less orders unrelated pointers).
bool overlaps(const float* a, int64_t na, const float* b, int64_t nb) {
  std::less<const float*> lt;
  return na > 0 && nb > 0 && lt(a, b + nb) && lt(b, a + na);
}

}  // namespace

// ---- CommHandle ----------------------------------------------------------------------------

CommHandle& CommHandle::operator=(CommHandle&& o) {
  if (this != &o) {
    wait();
    req_ = std::move(o.req_);
  }
  return *this;
}

CommHandle::~CommHandle() {
  if (!req_) return;
  try {
    req_->wait();
  } catch (const std::exception& e) {
    // After a timeout every wait fails at once, and the timeout itself has been reported.
    if (!Watchdog::instance().fired())
      log_warn(std::string("an unwaited communication handle failed: ") + e.what());
  }
}

void CommHandle::wait() {
  if (!req_) return;
  // Release before waiting: a failed request is finished either way, and must not be waited
  // again by the destructor.
  std::unique_ptr<CommRequest> r = std::move(req_);
  r->wait();
}

bool CommHandle::test() {
  if (!req_) return true;
  bool complete = false;
  try {
    complete = req_->test();
  } catch (...) {
    req_.reset();  // failed is finished: the destructor must not report it a second time
    throw;
  }
  if (complete) req_.reset();
  return complete;
}

// ---- Comm ----------------------------------------------------------------------------------

int64_t comm_type_size(CommType t) {
  switch (t) {
    case CommType::f32:
      return 4;
    case CommType::f64:
      return 8;
    case CommType::i64:
      return 8;
  }
  return 0;
}

Comm::Comm(std::string axis) { stats_.axis = std::move(axis); }

std::string Comm::describe() const {
  return stats_.axis + " rank " + std::to_string(rank()) + "/" + std::to_string(size()) + " (" +
         backend() + ")";
}

void Comm::check_count(int64_t n, const char* op) const {
  STRATA_CHECK(n >= 0,
               std::string(op) + " on " + describe() + ": negative count " + std::to_string(n));
}

void Comm::check_peer(int peer, const char* what, const char* op) const {
  STRATA_CHECK(peer >= 0 && peer < size(), std::string(op) + " on " + describe() + ": " + what +
                                               " " + std::to_string(peer) + " out of range");
}

void Comm::check_scatter_gather(const float* send, const float* recv, int64_t n,
                                bool gather) const {
  const int64_t full = static_cast<int64_t>(size()) * n;
  if (gather) {
    // In place is send == recv + rank*n (the shard already sits in the full buffer); any other
    // overlap would be read after it is overwritten.
    const bool in_place = send == recv + static_cast<int64_t>(rank()) * n;
    STRATA_CHECK(in_place || !overlaps(send, n, recv, full),
                 "all_gather on " + describe() + ": send overlaps recv but is not its own chunk");
  } else {
    STRATA_CHECK(!overlaps(send, full, recv, n),
                 "reduce_scatter_sum on " + describe() + ": send and recv overlap");
  }
}

void Comm::all_reduce_sum(float* buf, int64_t n) {
  check_count(n, "all_reduce_sum");
  stats_.add(CommOp::all_reduce, 2 * n * kF32);
  do_all_reduce(buf, n, CommType::f32, ReduceOp::sum);
}

void Comm::all_reduce_max(float* buf, int64_t n) {
  scalar_all_reduce(buf, n, CommType::f32, ReduceOp::max);
}

void Comm::reduce_scatter_sum(const float* send, float* recv, int64_t n) {
  check_count(n, "reduce_scatter_sum");
  check_scatter_gather(send, recv, n, false);
  stats_.add(CommOp::reduce_scatter, size() * n * kF32);
  do_reduce_scatter_sum(send, recv, n);
}

void Comm::all_gather(const float* send, float* recv, int64_t n) {
  check_count(n, "all_gather");
  check_scatter_gather(send, recv, n, true);
  stats_.add(CommOp::all_gather, size() * n * kF32);
  do_all_gather(send, recv, n);
}

void Comm::broadcast(float* buf, int64_t n, int root) {
  check_count(n, "broadcast");
  broadcast_bytes(buf, n * kF32, root);
}

void Comm::broadcast_bytes(void* buf, int64_t bytes, int root) {
  check_count(bytes, "broadcast");
  check_peer(root, "root", "broadcast");
  stats_.add(CommOp::broadcast, bytes);
  do_broadcast(buf, bytes, root);
}

void Comm::barrier() {
  stats_.add(CommOp::barrier, 0);
  do_barrier();
}

void Comm::send(const float* buf, int64_t n, int dst, int tag) {
  check_count(n, "send");
  check_peer(dst, "destination", "send");
  STRATA_CHECK(tag >= 0, "send on " + describe() + ": negative tag");
  stats_.add(CommOp::send, n * kF32);
  do_send(buf, n, dst, tag);
}

void Comm::recv(float* buf, int64_t n, int src, int tag) {
  check_count(n, "recv");
  check_peer(src, "source", "recv");
  STRATA_CHECK(tag >= 0, "recv on " + describe() + ": negative tag");
  stats_.add(CommOp::recv, n * kF32);
  do_recv(buf, n, src, tag);
}

void Comm::send_recv(const float* send_buf, int64_t send_n, int dst, float* recv_buf,
                     int64_t recv_n, int src, int tag) {
  check_count(send_n, "send_recv");
  check_count(recv_n, "send_recv");
  check_peer(dst, "destination", "send_recv");
  check_peer(src, "source", "send_recv");
  STRATA_CHECK(tag >= 0, "send_recv on " + describe() + ": negative tag");
  STRATA_CHECK(!overlaps(send_buf, send_n, recv_buf, recv_n),
               "send_recv on " + describe() + ": send and recv buffers overlap");
  stats_.add(CommOp::send, send_n * kF32);
  stats_.add(CommOp::recv, recv_n * kF32);
  do_send_recv(send_buf, send_n, dst, recv_buf, recv_n, src, tag);
}

void Comm::scalar_all_reduce(void* buf, int64_t n, CommType t, ReduceOp op) {
  check_count(n, "all_reduce");
  stats_.add(CommOp::all_reduce, 2 * n * comm_type_size(t));
  do_all_reduce(buf, n, t, op);
}

void Comm::all_reduce_sum_double(double* buf, int64_t n) {
  scalar_all_reduce(buf, n, CommType::f64, ReduceOp::sum);
}
void Comm::all_reduce_max_double(double* buf, int64_t n) {
  scalar_all_reduce(buf, n, CommType::f64, ReduceOp::max);
}
void Comm::all_reduce_sum_int64(int64_t* buf, int64_t n) {
  scalar_all_reduce(buf, n, CommType::i64, ReduceOp::sum);
}
void Comm::all_reduce_max_int64(int64_t* buf, int64_t n) {
  scalar_all_reduce(buf, n, CommType::i64, ReduceOp::max);
}

CommHandle Comm::iall_reduce_sum(float* buf, int64_t n) {
  check_count(n, "iall_reduce_sum");
  stats_.add(CommOp::all_reduce, 2 * n * kF32);
  return do_iall_reduce_sum(buf, n);
}

CommHandle Comm::ireduce_scatter_sum(const float* send, float* recv, int64_t n) {
  check_count(n, "ireduce_scatter_sum");
  check_scatter_gather(send, recv, n, false);
  stats_.add(CommOp::reduce_scatter, size() * n * kF32);
  return do_ireduce_scatter_sum(send, recv, n);
}

CommHandle Comm::iall_gather(const float* send, float* recv, int64_t n) {
  check_count(n, "iall_gather");
  check_scatter_gather(send, recv, n, true);
  stats_.add(CommOp::all_gather, size() * n * kF32);
  return do_iall_gather(send, recv, n);
}

CommHandle Comm::isend(const float* buf, int64_t n, int dst, int tag) {
  check_count(n, "isend");
  check_peer(dst, "destination", "isend");
  STRATA_CHECK(tag >= 0, "isend on " + describe() + ": negative tag");
  stats_.add(CommOp::send, n * kF32);
  return do_isend(buf, n, dst, tag);
}

CommHandle Comm::irecv(float* buf, int64_t n, int src, int tag) {
  check_count(n, "irecv");
  check_peer(src, "source", "irecv");
  STRATA_CHECK(tag >= 0, "irecv on " + describe() + ": negative tag");
  stats_.add(CommOp::recv, n * kF32);
  return do_irecv(buf, n, src, tag);
}

CommHandle Comm::ibroadcast(float* buf, int64_t n, int root) {
  check_count(n, "ibroadcast");
  check_peer(root, "root", "ibroadcast");
  stats_.add(CommOp::broadcast, n * kF32);
  return do_ibroadcast(buf, n, root);
}

CommHandle Comm::iall_reduce_scaled_rows(float* buf, int64_t rows, int64_t row_len,
                                         int64_t scaled) {
  check_count(rows, "iall_reduce_scaled_rows");
  STRATA_CHECK(row_len >= 1 && scaled >= 0 && scaled < row_len,
               "iall_reduce_scaled_rows on " + describe() + ": a record of " +
                   std::to_string(row_len) + " floats cannot hold 1 + " + std::to_string(scaled) +
                   " scaled values");
  stats_.add(CommOp::all_reduce, 2 * rows * row_len * kF32);
  return do_iall_reduce_scaled_rows(buf, rows, row_len, scaled);
}

std::unique_ptr<Comm> Comm::split(int color, int key, std::string axis) {
  return do_split(color, key, std::move(axis));
}

}  // namespace strata
