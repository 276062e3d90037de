#pragma once
// SelfComm: the communicator of size 1. A single process runs the layout dp=sp=pp=1 through the
// same code as a multi-rank job, on this communicator, without initialising MPI (which costs about
// 0.3 s and forks an ORTE daemon in singleton mode). Collectives are identities or copies;
// messages sent to self are buffered until received. Stats are counted as on any backend.
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "parallel/comm.h"

namespace strata {

class SelfComm final : public Comm {
 public:
  explicit SelfComm(std::string axis = "world") : Comm(std::move(axis)) {}

  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* backend() const override { return "self"; }

  // Takes the message sent to self with this tag, oldest first; false when there is none.
  bool take_message(float* buf, int64_t n, int tag);

 protected:
  void do_all_reduce(void*, int64_t, CommType, ReduceOp) override {}
  void do_reduce_scatter_sum(const float* send, float* recv, int64_t n) override;
  void do_all_gather(const float* send, float* recv, int64_t n) override;
  void do_broadcast(void*, int64_t, int) override {}
  void do_barrier() override {}
  void do_send(const float* buf, int64_t n, int dst, int tag) override;
  void do_recv(float* buf, int64_t n, int src, int tag) override;
  void do_send_recv(const float* send_buf, int64_t send_n, int dst, float* recv_buf, int64_t recv_n,
                    int src, int tag) override;
  CommHandle do_iall_reduce_sum(float*, int64_t) override { return {}; }
  CommHandle do_ireduce_scatter_sum(const float* send, float* recv, int64_t n) override;
  CommHandle do_iall_gather(const float* send, float* recv, int64_t n) override;
  CommHandle do_isend(const float* buf, int64_t n, int dst, int tag) override;
  CommHandle do_irecv(float* buf, int64_t n, int src, int tag) override;
  CommHandle do_ibroadcast(float*, int64_t, int) override { return {}; }
  CommHandle do_iall_reduce_scaled_rows(float*, int64_t, int64_t, int64_t) override { return {}; }
  std::unique_ptr<Comm> do_split(int color, int key, std::string axis) override;

 private:
  std::map<int, std::deque<std::vector<float>>> mailbox_;  // tag -> messages in send order
};

}  // namespace strata
