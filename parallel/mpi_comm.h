#pragma once
// MpiComm: the MPI backend on host buffers, the distributed engine on CPU and the bootstrap for
// NCCL. It sets MPI_ERRORS_RETURN on its communicator so a failure becomes a StrataError naming
// the operation and the communicator instead of MPI's default abort.
//
// Every blocking operation is the nonblocking MPI call plus the watchdog's poll loop
// (parallel/mpi_watchdog.h), so no wait is without a deadline; each operation is numbered on its
// communicator and kept in the flight recorder (parallel/flight_recorder.h).
#include <mpi.h>

#include <memory>
#include <string>

#include "parallel/comm.h"
#include "parallel/flight_recorder.h"

namespace strata {

class MpiComm final : public Comm {
 public:
  // Takes ownership of `comm` (freed on destruction while MPI is still initialised).
  MpiComm(MPI_Comm comm, std::string axis);
  // A duplicate of MPI_COMM_WORLD, so our traffic never matches another library's.
  static std::unique_ptr<MpiComm> world(std::string axis = "world");
  ~MpiComm() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend() const override { return "mpi"; }
  MPI_Comm handle() const { return comm_; }

 protected:
  void do_all_reduce(void* buf, int64_t n, CommType t, ReduceOp op) override;
  void do_reduce_scatter_sum(const float* send, float* recv, int64_t n) override;
  void do_all_gather(const float* send, float* recv, int64_t n) override;
  void do_broadcast(void* buf, int64_t bytes, int root) override;
  void do_barrier() override;
  void do_send(const float* buf, int64_t n, int dst, int tag) override;
  void do_recv(float* buf, int64_t n, int src, int tag) override;
  void do_send_recv(const float* send_buf, int64_t send_n, int dst, float* recv_buf, int64_t recv_n,
                    int src, int tag) override;
  CommHandle do_iall_reduce_sum(float* buf, int64_t n) override;
  CommHandle do_ireduce_scatter_sum(const float* send, float* recv, int64_t n) override;
  CommHandle do_iall_gather(const float* send, float* recv, int64_t n) override;
  CommHandle do_isend(const float* buf, int64_t n, int dst, int tag) override;
  CommHandle do_irecv(float* buf, int64_t n, int src, int tag) override;
  CommHandle do_ibroadcast(float* buf, int64_t n, int root) override;
  CommHandle do_iall_reduce_scaled_rows(float* buf, int64_t rows, int64_t row_len,
                                        int64_t scaled) override;
  std::unique_ptr<Comm> do_split(int color, int key, std::string axis) override;

 private:
  int count(int64_t n, const char* op) const;  // MPI counts are int
  void check(int rc, const char* op) const;
  // Numbers the operation and starts its flight record.
  FlightRecord record(const char* op, int64_t bytes, int peer = -1);
  // Waits under the watchdog's deadline; an MPI error is thrown naming `mpi_op`.
  void wait(int n, MPI_Request* reqs, MPI_Status* statuses, const FlightRecord& rec,
            const char* mpi_op);
  void check_received(const MPI_Status& st, int expected, int src, const char* mpi_op) const;

  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
  std::shared_ptr<const CommGroup> group_;  // axis and the members' world ranks
  uint64_t seq_ = 0;                        // operations issued on this communicator
};

// "MPI_Allreduce failed on dp rank 1/2 (mpi): <MPI's message>" for an MPI return code.
std::string mpi_error_message(int rc, const std::string& op, const std::string& where);

}  // namespace strata
