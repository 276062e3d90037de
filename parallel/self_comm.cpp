#include "parallel/self_comm.h"

#include <cstring>

#include "core/error.h"

namespace strata {

namespace {

// A receive posted before its send (legal with irecv): completes at wait() from the mailbox.
class SelfRecvRequest final : public CommRequest {
 public:
  SelfRecvRequest(SelfComm* comm, float* buf, int64_t n, int tag)
      : comm_(comm), buf_(buf), n_(n), tag_(tag) {}
  void wait() override {
    if (!comm_->take_message(buf_, n_, tag_))
      throw StrataError("irecv on " + comm_->describe() + ": no message with tag " +
                        std::to_string(tag_) + " was sent to self (this would hang under MPI)");
  }
  bool test() override { return comm_->take_message(buf_, n_, tag_); }

 private:
  SelfComm* comm_;
  float* buf_;
  int64_t n_;
  int tag_;
};

}  // namespace

void SelfComm::do_reduce_scatter_sum(const float* send, float* recv, int64_t n) {
  if (n > 0) std::memcpy(recv, send, static_cast<size_t>(n) * sizeof(float));
}

void SelfComm::do_all_gather(const float* send, float* recv, int64_t n) {
  if (n > 0 && send != recv) std::memcpy(recv, send, static_cast<size_t>(n) * sizeof(float));
}

void SelfComm::do_send(const float* buf, int64_t n, int, int tag) {
  mailbox_[tag].emplace_back(buf, buf + n);
}

bool SelfComm::take_message(float* buf, int64_t n, int tag) {
  auto it = mailbox_.find(tag);
  if (it == mailbox_.end() || it->second.empty()) return false;
  const std::vector<float>& msg = it->second.front();
  if (static_cast<int64_t>(msg.size()) != n)
    throw StrataError("recv on " + describe() + ": expected " + std::to_string(n) +
                      " floats with tag " + std::to_string(tag) + ", the message has " +
                      std::to_string(msg.size()));
  if (n > 0) std::memcpy(buf, msg.data(), static_cast<size_t>(n) * sizeof(float));
  it->second.pop_front();
  if (it->second.empty()) mailbox_.erase(it);
  return true;
}

void SelfComm::do_recv(float* buf, int64_t n, int, int tag) {
  if (!take_message(buf, n, tag))
    throw StrataError("recv on " + describe() + ": no message with tag " + std::to_string(tag) +
                      " was sent to self (this would hang under MPI)");
}

void SelfComm::do_send_recv(const float* send_buf, int64_t send_n, int dst, float* recv_buf,
                            int64_t recv_n, int src, int tag) {
  do_send(send_buf, send_n, dst, tag);
  do_recv(recv_buf, recv_n, src, tag);
}

CommHandle SelfComm::do_ireduce_scatter_sum(const float* send, float* recv, int64_t n) {
  do_reduce_scatter_sum(send, recv, n);
  return {};
}

CommHandle SelfComm::do_iall_gather(const float* send, float* recv, int64_t n) {
  do_all_gather(send, recv, n);
  return {};
}

CommHandle SelfComm::do_isend(const float* buf, int64_t n, int dst, int tag) {
  do_send(buf, n, dst, tag);
  return {};
}

CommHandle SelfComm::do_irecv(float* buf, int64_t n, int, int tag) {
  return CommHandle(std::make_unique<SelfRecvRequest>(this, buf, n, tag));
}

std::unique_ptr<Comm> SelfComm::do_split(int color, int, std::string axis) {
  if (color < 0) return nullptr;
  return std::make_unique<SelfComm>(std::move(axis));
}

}  // namespace strata
