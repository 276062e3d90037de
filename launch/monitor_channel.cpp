#include "launch/monitor_channel.h"

#include <mpi.h>

#include "parallel/mpi_comm.h"

namespace strata {

namespace {

constexpr int kHeartbeatTag = 0x4842;      // "HB"
constexpr int kMaxMessageBytes = 1 << 16;  // a report is a few hundred bytes

class MpiHeartbeatChannel final : public HeartbeatChannel {
 public:
  explicit MpiHeartbeatChannel(MPI_Comm world) {
    MPI_Comm_dup(world, &comm_);
    MPI_Comm_rank(comm_, &rank_);
  }
  // A send still in flight is left to MPI (rank 0 may be gone); the communicator is then kept,
  // as freeing it under a pending request is not allowed.
  ~MpiHeartbeatChannel() override {
    if (!in_flight()) MPI_Comm_free(&comm_);
  }

  bool send(const std::string& text) override {
    if (rank_ == 0 || in_flight() || text.size() > kMaxMessageBytes) return false;
    pending_ = text;
    return MPI_Isend(pending_.data(), static_cast<int>(pending_.size()), MPI_BYTE, 0, kHeartbeatTag,
                     comm_, &request_) == MPI_SUCCESS;
  }

  std::vector<std::pair<int, std::string>> receive() override {
    std::vector<std::pair<int, std::string>> out;
    for (;;) {
      int flag = 0;
      MPI_Status st;
      if (MPI_Iprobe(MPI_ANY_SOURCE, kHeartbeatTag, comm_, &flag, &st) != MPI_SUCCESS || !flag)
        return out;
      int bytes = 0;
      MPI_Get_count(&st, MPI_BYTE, &bytes);
      std::string text(static_cast<size_t>(bytes > 0 ? bytes : 0), '\0');
      // Probed: the message is here, so this receive completes at once.
      MPI_Recv(text.data(), bytes, MPI_BYTE, st.MPI_SOURCE, kHeartbeatTag, comm_,
               MPI_STATUS_IGNORE);
      if (bytes <= kMaxMessageBytes) out.emplace_back(st.MPI_SOURCE, std::move(text));
    }
  }

 private:
  bool in_flight() {
    if (request_ == MPI_REQUEST_NULL) return false;
    int done = 0;
    MPI_Test(&request_, &done, MPI_STATUS_IGNORE);
    return !done;
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  MPI_Request request_ = MPI_REQUEST_NULL;
  std::string pending_;  // the buffer of the send in flight
};

}  // namespace

std::unique_ptr<HeartbeatChannel> HeartbeatChannel::create(Comm& world) {
  auto* mpi = dynamic_cast<MpiComm*>(&world);
  if (!mpi || world.size() < 2) return nullptr;
  return std::make_unique<MpiHeartbeatChannel>(mpi->handle());
}

}  // namespace strata
