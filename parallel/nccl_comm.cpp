// Compiled only with STRATA_HAVE_NCCL (see parallel/CMakeLists.txt). Not run on the development
// machine, which has no GPU: see nccl_comm.h.
#include "parallel/nccl_comm.h"

#include "core/error.h"

namespace strata {

namespace {

ncclDataType_t nccl_type(CommType t) {
  switch (t) {
    case CommType::f32:
      return ncclFloat32;
    case CommType::f64:
      return ncclFloat64;
    case CommType::i64:
      return ncclInt64;
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) { return op == ReduceOp::sum ? ncclSum : ncclMax; }

void check_cuda(cudaError_t rc, const std::string& op, const std::string& where) {
  if (rc != cudaSuccess)
    throw StrataError(op + " failed on " + where + ": " + cudaGetErrorString(rc));
}

// Completion of enqueued NCCL work, observed through an event on the comm's stream.
class NcclRequest final : public CommRequest {
 public:
  NcclRequest(cudaEvent_t ev, ncclComm_t comm, const char* op, std::string where)
      : ev_(ev), comm_(comm), op_(op), where_(std::move(where)) {}
  ~NcclRequest() override { cudaEventDestroy(ev_); }
  void wait() override {
    check_cuda(cudaEventSynchronize(ev_), op_, where_);
    check_async();
  }
  bool test() override {
    const cudaError_t rc = cudaEventQuery(ev_);
    if (rc == cudaErrorNotReady) return false;
    check_cuda(rc, op_, where_);
    check_async();
    return true;
  }

 private:
  void check_async() {
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(comm_, &async);
    if (async != ncclSuccess)
      throw StrataError(std::string(op_) + " failed on " + where_ + ": " +
                        ncclGetErrorString(async));
  }

  cudaEvent_t ev_;
  ncclComm_t comm_;
  const char* op_;
  std::string where_;
};

}  // namespace

NcclComm::NcclComm(Comm& bootstrap, std::string axis, cudaStream_t stream) : Comm(std::move(axis)) {
  STRATA_CHECK(std::string(bootstrap.backend()) != "nccl",
               "an NCCL communicator is bootstrapped over a host communicator");
  ncclUniqueId id{};
  if (bootstrap.rank() == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  bootstrap.broadcast_bytes(&id, sizeof id, 0);
  check(ncclCommInitRank(&comm_, bootstrap.size(), id, bootstrap.rank()), "ncclCommInitRank");
  if (stream) {
    stream_ = Stream(stream, [](cudaStream_t) {});
  } else {
    cudaStream_t s = nullptr;
    check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate",
               describe());
    stream_ = Stream(s, [](cudaStream_t p) { cudaStreamDestroy(p); });
  }
  init_common();
}

NcclComm::NcclComm(ncclComm_t comm, Stream stream, std::string axis)
    : Comm(std::move(axis)), comm_(comm), stream_(std::move(stream)) {
  init_common();
}

void NcclComm::init_common() {
  check(ncclCommUserRank(comm_, &rank_), "ncclCommUserRank");
  check(ncclCommCount(comm_, &size_), "ncclCommCount");
  check_cuda(cudaMalloc(&scratch_, sizeof(float)), "cudaMalloc", describe());
}

NcclComm::~NcclComm() {
  if (scratch_) cudaFree(scratch_);
  if (comm_) {
    // Finalize flushes outstanding work before the resources go.
    ncclCommFinalize(comm_);
    ncclCommDestroy(comm_);
  }
}

void NcclComm::check(ncclResult_t rc, const char* op) const {
  if (rc == ncclSuccess) return;
  std::string detail = ncclGetErrorString(rc);
  if (comm_) {
    const char* last = ncclGetLastError(comm_);
    if (last && *last) detail += std::string(" (") + last + ")";
  }
  throw StrataError(std::string(op) + " failed on " + describe() + ": " + detail);
}

void NcclComm::sync(const char* op) {
  check_cuda(cudaStreamSynchronize(stream()), op, describe());
  ncclResult_t async = ncclSuccess;
  check(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError");
  check(async, op);
}

CommHandle NcclComm::pending(const char* op) {
  cudaEvent_t ev = nullptr;
  check_cuda(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate", describe());
  const cudaError_t rc = cudaEventRecord(ev, stream());
  if (rc != cudaSuccess) cudaEventDestroy(ev);
  check_cuda(rc, "cudaEventRecord", describe());
  return CommHandle(std::make_unique<NcclRequest>(ev, comm_, op, describe()));
}

void NcclComm::do_all_reduce(void* buf, int64_t n, CommType t, ReduceOp op) {
  check(ncclAllReduce(buf, buf, static_cast<size_t>(n), nccl_type(t), nccl_op(op), comm_, stream()),
        "ncclAllReduce");
  sync("ncclAllReduce");
}

void NcclComm::do_reduce_scatter_sum(const float* send, float* recv, int64_t n) {
  check(
      ncclReduceScatter(send, recv, static_cast<size_t>(n), ncclFloat32, ncclSum, comm_, stream()),
      "ncclReduceScatter");
  sync("ncclReduceScatter");
}

void NcclComm::do_all_gather(const float* send, float* recv, int64_t n) {
  // NCCL handles send == recv + rank*n (in place) itself.
  check(ncclAllGather(send, recv, static_cast<size_t>(n), ncclFloat32, comm_, stream()),
        "ncclAllGather");
  sync("ncclAllGather");
}

void NcclComm::do_broadcast(void* buf, int64_t bytes, int root) {
  check(ncclBroadcast(buf, buf, static_cast<size_t>(bytes), ncclChar, root, comm_, stream()),
        "ncclBroadcast");
  sync("ncclBroadcast");
}

void NcclComm::do_barrier() {
  check(ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm_, stream()),
        "ncclAllReduce (barrier)");
  sync("barrier");
}

void NcclComm::do_send(const float* buf, int64_t n, int dst, int) {
  check(ncclSend(buf, static_cast<size_t>(n), ncclFloat32, dst, comm_, stream()), "ncclSend");
  sync("ncclSend");
}

void NcclComm::do_recv(float* buf, int64_t n, int src, int) {
  check(ncclRecv(buf, static_cast<size_t>(n), ncclFloat32, src, comm_, stream()), "ncclRecv");
  sync("ncclRecv");
}

void NcclComm::do_send_recv(const float* send_buf, int64_t send_n, int dst, float* recv_buf,
                            int64_t recv_n, int src, int) {
  check(ncclGroupStart(), "ncclGroupStart");
  const ncclResult_t s =
      ncclSend(send_buf, static_cast<size_t>(send_n), ncclFloat32, dst, comm_, stream());
  const ncclResult_t r =
      ncclRecv(recv_buf, static_cast<size_t>(recv_n), ncclFloat32, src, comm_, stream());
  check(ncclGroupEnd(), "ncclGroupEnd");
  check(s, "ncclSend");
  check(r, "ncclRecv");
  sync("ncclSend/ncclRecv");
}

CommHandle NcclComm::do_iall_reduce_sum(float* buf, int64_t n) {
  check(ncclAllReduce(buf, buf, static_cast<size_t>(n), ncclFloat32, ncclSum, comm_, stream()),
        "ncclAllReduce");
  return pending("ncclAllReduce");
}

CommHandle NcclComm::do_ireduce_scatter_sum(const float* send, float* recv, int64_t n) {
  check(
      ncclReduceScatter(send, recv, static_cast<size_t>(n), ncclFloat32, ncclSum, comm_, stream()),
      "ncclReduceScatter");
  return pending("ncclReduceScatter");
}

CommHandle NcclComm::do_iall_gather(const float* send, float* recv, int64_t n) {
  check(ncclAllGather(send, recv, static_cast<size_t>(n), ncclFloat32, comm_, stream()),
        "ncclAllGather");
  return pending("ncclAllGather");
}

CommHandle NcclComm::do_isend(const float* buf, int64_t n, int dst, int) {
  check(ncclSend(buf, static_cast<size_t>(n), ncclFloat32, dst, comm_, stream()), "ncclSend");
  return pending("ncclSend");
}

CommHandle NcclComm::do_irecv(float* buf, int64_t n, int src, int) {
  check(ncclRecv(buf, static_cast<size_t>(n), ncclFloat32, src, comm_, stream()), "ncclRecv");
  return pending("ncclRecv");
}

CommHandle NcclComm::do_ibroadcast(float* buf, int64_t n, int root) {
  check(ncclBroadcast(buf, buf, static_cast<size_t>(n), ncclFloat32, root, comm_, stream()),
        "ncclBroadcast");
  return pending("ncclBroadcast");
}

CommHandle NcclComm::do_iall_reduce_scaled_rows(float*, int64_t, int64_t, int64_t) {
  // NCCL has no user-defined reductions; the device form (a MAX all-reduce, a rescale kernel,
  // a SUM all-reduce on one stream) comes with the CUDA vocabulary head.
  throw StrataError("iall_reduce_scaled_rows on " + describe() +
                    ": not available on the NCCL backend yet (vocabulary parallelism runs on "
                    "the MPI backend)");
}

std::unique_ptr<Comm> NcclComm::do_split(int color, int key, std::string axis) {
  ncclComm_t out = nullptr;
  check(ncclCommSplit(comm_, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &out, nullptr),
        "ncclCommSplit");
  if (!out) return nullptr;
  return std::unique_ptr<Comm>(new NcclComm(out, stream_, std::move(axis)));
}

}  // namespace strata
