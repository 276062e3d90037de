#pragma once
// NcclComm: the NCCL backend on device buffers (one GPU per rank). Built only when CMake finds
// CUDA and NCCL (STRATA_HAVE_NCCL); include this header only under that macro.
//
// Not yet run: the development machine has the CUDA toolkit and NCCL headers but no GPU, so this
// file is compiled and linked there and exercised first on a GPU machine.
//
// Semantics on top of comm.h:
//  - Operations are enqueued on stream(). A blocking call synchronises the stream before it
//    returns, so "the result is in the buffer on return" holds as for MPI; a nonblocking call
//    records an event that the handle's wait() synchronises on.
//  - NCCL has no tags and no barrier: tags are checked but ignored (messages between a pair of
//    ranks match in posting order), and barrier() is a one-float all-reduce.
//  - A send kernel waits on the stream for its peer's receive, so two ranks that exchange must use
//    send_recv (grouped) rather than send then recv.
#include <cuda_runtime.h>
#include <nccl.h>

#include <memory>
#include <string>

#include "parallel/comm.h"

namespace strata {

class NcclComm final : public Comm {
 public:
  // Collective over `bootstrap` (an MpiComm over the same ranks): its rank 0 creates the NCCL
  // unique id and broadcasts it; every rank joins with its bootstrap rank. The CUDA device of the
  // calling thread must already be set. stream == nullptr: the comm creates and owns one.
  NcclComm(Comm& bootstrap, std::string axis, cudaStream_t stream = nullptr);
  ~NcclComm() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend() const override { return "nccl"; }
  ncclComm_t handle() const { return comm_; }
  cudaStream_t stream() const { return stream_.get(); }

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
  using Stream = std::shared_ptr<CUstream_st>;  // shared with communicators split from this one
  NcclComm(ncclComm_t comm, Stream stream, std::string axis);
  void init_common();
  void check(ncclResult_t rc, const char* op) const;
  void sync(const char* op);           // blocking forms: wait for the stream
  CommHandle pending(const char* op);  // nonblocking forms: an event after the op

  ncclComm_t comm_ = nullptr;
  Stream stream_;
  float* scratch_ = nullptr;  // one device float for barrier()
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace strata
