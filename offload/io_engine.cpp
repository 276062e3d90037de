#include "offload/io_engine.h"

#include <fcntl.h>
#include <liburing.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "core/error.h"
#include "core/log.h"
#include "core/stop_wait.h"
#include "core/trace.h"

namespace strata {

namespace {

std::string errno_text(int err) {
  return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")";
}

}  // namespace

IoBackend parse_io_backend(const std::string& s) {
  if (s == "auto" || s == "automatic" || s.empty()) return IoBackend::automatic;
  if (s == "io_uring" || s == "uring") return IoBackend::io_uring;
  if (s == "threads") return IoBackend::threads;
  throw InputError("unknown I/O backend '" + s + "' (expected auto, io_uring or threads)");
}

namespace {

struct Op;

// One block-sized piece of a request; its address is the io_uring user_data.
struct Piece {
  Op* op = nullptr;
  int fd = -1;  // copied at submission so workers never read the growing file table
  int64_t offset = 0;
  char* buf = nullptr;
  int64_t len = 0;
  int stalls = 0;   // consecutive short transfers that made no aligned progress
  int eagains = 0;  // consecutive -EAGAIN
};

struct Op {
  IoTicket ticket = 0;
  int slot = 0;
  bool is_write = false;
  int64_t offset = 0;
  int64_t bytes = 0;
  std::vector<Piece> pieces;
  int64_t outstanding = 0;               // pieces neither completed nor dropped
  std::function<void(bool ok)> on_done;  // run once when outstanding reaches 0
  std::string error;                     // first failure; later pieces are drained, not resubmitted
  double t_submit_us = trace_now_us();   // its span in a trace (log.trace_steps)
};

struct FileEntry {
  std::string path;
  int fd = -1;
  DioAlignment align;
};

// Request bookkeeping and completion checking shared by both backends; a backend only submits
// pieces and reports (piece, result) completions.
//
// Progress: a request larger than queue_depth pieces must keep moving while the caller computes,
// or the overlap the engine exists for is lost (only the first queue_depth pieces would run).
// So one driver thread owns the completion side: it alone reaps, and refills the queue to
// queue_depth pieces for as long as any are pending. Callers queue requests (submitting what fits
// at once) and wait for them; every submission is made under mu_, one thread at a time, so the
// submission and completion sides each have a single user. The driver starts with the first
// request and stops in stop_driver() (called by the backends' destructors, before their own
// members go).
class EngineBase : public IoEngine {
 public:
  explicit EngineBase(const IoOptions& o) : opt_(o) {
    STRATA_CHECK(opt_.queue_depth >= 1, "queue_depth must be >= 1");
    // 1 GiB cap: a completion's byte count is an int.
    STRATA_CHECK(opt_.block_size >= 4096 && opt_.block_size % 4096 == 0 &&
                     opt_.block_size <= (int64_t{1} << 30),
                 "block_size must be a multiple of 4096 between 4 KiB and 1 GiB");
  }
  ~EngineBase() override {
    for (auto& f : files_)
      if (f.fd >= 0) ::close(f.fd);
  }

  int register_file(const std::string& path, bool create, int64_t capacity) override {
    const int flags = O_RDWR | O_DIRECT | O_CLOEXEC | (create ? O_CREAT : 0);
    const int fd = ::open(path.c_str(), flags, 0600);
    if (fd < 0) {
      const int err = errno;
      throw StrataError("cannot open '" + path + "' for direct I/O: " + errno_text(err) +
                        (err == EINVAL ? " (the file system does not support O_DIRECT)" : ""));
    }
    if (capacity > 0) {
      // fallocate reserves real blocks; file systems without it get a sparse ftruncate instead.
      if (fallocate(fd, 0, 0, capacity) != 0 && ftruncate(fd, capacity) != 0) {
        const int err = errno;
        ::close(fd);
        throw StrataError("cannot size '" + path + "' to " + std::to_string(capacity) +
                          " bytes: " + errno_text(err));
      }
    }
    std::lock_guard<std::mutex> lk(mu_);
    FileEntry f{path, fd, query_dio_alignment(fd)};
    files_.push_back(f);
    const int slot = static_cast<int>(files_.size()) - 1;
    on_file_registered(slot, fd);
    return slot;
  }

  IoTicket write(int slot, int64_t offset, const void* buf, int64_t bytes,
                 std::function<void(bool ok)> on_done) override {
    return start(true, slot, offset, const_cast<void*>(buf), bytes, std::move(on_done));
  }
  IoTicket read(int slot, int64_t offset, void* buf, int64_t bytes) override {
    return start(false, slot, offset, buf, bytes, {});
  }

  void wait(IoTicket t) override {
    std::unique_lock<std::mutex> lk(mu_);
    auto it = ops_.find(t);
    STRATA_CHECK(it != ops_.end(), "unknown or already-waited I/O ticket " + std::to_string(t));
    Op* op = it->second.get();
    wait_or_stop(
        done_cv_, lk, [&] { return op->outstanding == 0; }, "swap I/O");
    finish(it);
  }

  bool poll(IoTicket t) override {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = ops_.find(t);
    STRATA_CHECK(it != ops_.end(), "unknown or already-waited I/O ticket " + std::to_string(t));
    return it->second->outstanding == 0;
  }

  void wait_all() override {
    std::string first;
    for (;;) {
      IoTicket t;
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (ops_.empty()) break;
        t = ops_.begin()->first;
      }
      try {
        wait(t);
      } catch (const StrataError& e) {
        if (first.empty()) first = e.what();
      }
    }
    if (!first.empty()) throw StrataError(first);
  }

  const DioAlignment& alignment(int slot) const override { return file(slot).align; }
  const std::string& path(int slot) const override { return file(slot).path; }
  int native_fd(int slot) const override { return file(slot).fd; }
  IoStats stats() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return stats_;
  }
  int64_t in_flight() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return in_flight_;
  }

 protected:
  // Backend hooks, called with mu_ held (submit) or by the driver alone (reap).
  virtual void on_file_registered(int slot, int fd) = 0;
  virtual void submit(const std::vector<Piece*>& batch) = 0;
  // Appends completions; blocks for at least one when `block` (and something is in flight).
  virtual void reap(bool block, std::vector<std::pair<Piece*, int>>& out) = 0;

  // Lets everything in flight land (buffers may belong to callers), drops what was never
  // submitted, and stops the driver. Backends call it first thing in their destructors.
  void stop_driver() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stopping_ = true;
    }
    work_cv_.notify_all();
    if (driver_.joinable()) driver_.join();
    for (Op* op : notify_) {  // dropped unsubmitted: tell their owners
      op->outstanding = 0;
      op->on_done(false);
    }
    notify_.clear();
    ops_.clear();
  }

  const FileEntry& file(int slot) const {
    STRATA_CHECK(slot >= 0 && slot < static_cast<int>(files_.size()),
                 "unknown file slot " + std::to_string(slot));
    return files_[static_cast<size_t>(slot)];
  }

  IoOptions opt_;
  std::vector<FileEntry> files_;
  IoStats stats_;
  mutable std::mutex mu_;  // every member above and below, and the backend's submission side

 private:
  IoTicket start(bool is_write, int slot, int64_t offset, void* buf, int64_t bytes,
                 std::function<void(bool ok)> on_done) {
    std::unique_lock<std::mutex> lk(mu_);
    const FileEntry& f = file(slot);
    const auto addr = reinterpret_cast<uintptr_t>(buf);
    if (addr % static_cast<uintptr_t>(f.align.mem) != 0 || offset % f.align.offset != 0 ||
        bytes % f.align.offset != 0 || bytes <= 0 || offset < 0)
      throw StrataError(std::string("unaligned direct I/O ") + (is_write ? "write" : "read") +
                        " on '" + f.path + "': buffer address % " + std::to_string(f.align.mem) +
                        " = " + std::to_string(addr % static_cast<uintptr_t>(f.align.mem)) +
                        ", offset " + std::to_string(offset) + ", " + std::to_string(bytes) +
                        " bytes; O_DIRECT needs buffers aligned to " + std::to_string(f.align.mem) +
                        " and offsets/lengths to multiples of " + std::to_string(f.align.offset) +
                        " (from " + align_source_name(f.align.source) +
                        "); pad with io_padded_size()");
    if (!driver_error_.empty()) throw StrataError(driver_error_);
    auto op = std::make_unique<Op>();
    op->ticket = next_ticket_++;
    op->slot = slot;
    op->is_write = is_write;
    op->offset = offset;
    op->bytes = bytes;
    // Pieces stay whole alignment units even on a file system aligned coarser than block_size.
    const int64_t piece =
        std::max(f.align.offset, opt_.block_size / f.align.offset * f.align.offset);
    const int64_t n = (bytes + piece - 1) / piece;
    op->pieces.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      Piece& p = op->pieces[static_cast<size_t>(i)];
      p.op = op.get();
      p.fd = f.fd;
      p.offset = offset + i * piece;
      p.buf = static_cast<char*>(buf) + i * piece;
      p.len = std::min(piece, bytes - i * piece);
      pending_.push_back(&p);
    }
    op->outstanding = n;
    if (on_done) {
      op->on_done = std::move(on_done);
      notify_.push_back(op.get());
    }
    ++stats_.requests;
    const IoTicket t = op->ticket;
    ops_.emplace(t, std::move(op));
    pump_or_fail();  // submitted here, at once, up to queue_depth; the driver keeps the rest moving
    if (!driver_.joinable()) driver_ = std::thread([this] { drive(); });
    lk.unlock();
    work_cv_.notify_one();
    return t;
  }

  // The driver: while anything is in flight, wait for completions, check them, refill the queue.
  void drive() {
    std::vector<std::pair<Piece*, int>> done;
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      work_cv_.wait(lk, [&] { return stopping_ || in_flight_ > 0 || !pending_.empty(); });
      if (in_flight_ == 0) {
        if (stopping_) return;
        pump_or_fail();
        if (in_flight_ == 0) {
          done_cv_.notify_all();
          continue;
        }
      }
      lk.unlock();
      done.clear();
      std::string error;
      try {
        reap(true, done);  // the backend's completion side is the driver's alone
      } catch (const StrataError& e) {
        error = e.what();
      }
      lk.lock();
      // Waiters wake only when a request finished, not for every piece (small blocks would
      // otherwise cost a wake-up each).
      bool finished = !error.empty();
      for (auto& [p, res] : done) {
        Op* op = p->op;
        complete(p, res);
        finished = finished || op->outstanding == 0;
      }
      if (!error.empty()) fail_everything(error);
      run_done_callbacks();
      if (stopping_)
        pending_.clear();  // never submitted: nothing to wait for
      else
        pump_or_fail();
      if (finished || stopping_) done_cv_.notify_all();
    }
  }

  // pump(), where a backend that cannot submit fails every request rather than the caller alone.
  void pump_or_fail() {
    try {
      pump();
    } catch (const StrataError& e) {
      fail_everything(e.what());
    }
  }

  // The on_done of every request that has finished (under mu_).
  void run_done_callbacks() {
    std::erase_if(notify_, [](Op* op) {
      if (op->outstanding > 0) return false;
      auto done = std::move(op->on_done);
      done(op->error.empty());
      return true;
    });
  }

  // A backend failure (not a transfer's): every request fails with it, nothing more is issued.
  void fail_everything(const std::string& why) {
    if (driver_error_.empty()) driver_error_ = std::string(backend()) + " engine: " + why;
    for (Piece* p : pending_) {
      if (p->op->error.empty()) p->op->error = driver_error_;
      --p->op->outstanding;
    }
    pending_.clear();
    // What is in flight stays counted until it is reaped; if the backend cannot reap any more,
    // give those up too so no caller waits forever.
    if (in_flight_ > 0 && !reap_ok_after_failure()) {
      for (auto& [t, op] : ops_) {
        if (op->error.empty()) op->error = driver_error_;
        op->outstanding = 0;
      }
      in_flight_ = 0;
    }
    run_done_callbacks();
    done_cv_.notify_all();
  }
  // Whether completions can still be collected after a backend failure (threads: yes).
  virtual bool reap_ok_after_failure() const { return false; }

  // Moves pending pieces into flight, up to queue_depth, as one batch.
  void pump() {
    std::vector<Piece*> batch;
    while (in_flight_ < opt_.queue_depth && !pending_.empty()) {
      Piece* p = pending_.front();
      pending_.pop_front();
      if (!p->op->error.empty()) {  // its request already failed: drop, do not submit
        --p->op->outstanding;
        continue;
      }
      batch.push_back(p);
      ++in_flight_;
    }
    if (batch.empty()) return;
    stats_.pieces += static_cast<int64_t>(batch.size());
    ++stats_.submit_batches;
    submit(batch);
  }

  int inject(int res, const Piece& p) {
    ++completions_;
    const int64_t len = p.len;
    if (opt_.fault == IoFault::none || opt_.fault_nth <= 0) return res;
    const bool hit =
        opt_.fault_repeat ? completions_ % opt_.fault_nth == 0 : completions_ == opt_.fault_nth;
    if (!hit || res <= 0) return res;
    if (opt_.fault == IoFault::eagain) return -EAGAIN;
    // A kernel's short direct transfer always ends on an aligned boundary, so never fake one that
    // makes no aligned progress (a one-unit piece): that would look like a file ending mid-block.
    if (len <= file(p.op->slot).align.offset) return res;
    return static_cast<int>(std::min<int64_t>(res, len) / 2 + 1);
  }

  void fail(Piece* p, const std::string& why) {
    Op& op = *p->op;
    if (op.error.empty())
      op.error = std::string("direct I/O ") + (op.is_write ? "write" : "read") + " of '" +
                 file(op.slot).path + "' at offset " + std::to_string(p->offset) + " (" +
                 std::to_string(p->len) + " bytes) failed: " + why;
  }

  void complete(Piece* p, int res) {
    --in_flight_;
    res = inject(res, *p);
    Op& op = *p->op;
    if (!op.error.empty()) {  // drain only
      --op.outstanding;
      return;
    }
    if (res == -EAGAIN) {
      ++stats_.eagain_retries;
      if (++p->eagains > 1000) {
        fail(p, errno_text(EAGAIN) + " after 1000 retries");
        --op.outstanding;
        return;
      }
      if (p->eagains > 8) std::this_thread::yield();  // the device is saturated; back off a bit
      pending_.push_front(p);
      return;
    }
    p->eagains = 0;
    if (res < 0) {
      fail(p, errno_text(-res));
      --op.outstanding;
      return;
    }
    if (res == 0) {
      fail(p, op.is_write ? "the device accepted no bytes"
                          : "unexpected end of file (was the file truncated?)");
      --op.outstanding;
      return;
    }
    if (res < p->len) {
      // O_DIRECT restarts on an aligned boundary, so resume at the aligned offset at or below
      // where the transfer stopped; the few bytes moved twice are identical.
      ++stats_.short_retries;
      const int64_t al = file(op.slot).align.offset;
      const int64_t advance = (p->offset + res) / al * al - p->offset;
      if (advance == 0 && ++p->stalls > 3) {
        fail(p, "repeated short transfer of " + std::to_string(res) +
                    " bytes below the alignment (" + std::to_string(al) +
                    "); the file ends mid-block or was truncated");
        --op.outstanding;
        return;
      }
      if (advance > 0) p->stalls = 0;
      stats_.bytes += advance;
      p->offset += advance;
      p->buf += advance;
      p->len -= advance;
      pending_.push_front(p);
      return;
    }
    stats_.bytes += p->len;
    if (--op.outstanding == 0)
      trace_span(TraceTrack::swap, op.is_write ? "write" : "read", op.t_submit_us,
                 "\"bytes\":" + std::to_string(op.bytes));
  }

  void finish(std::unordered_map<IoTicket, std::unique_ptr<Op>>::iterator it) {
    run_done_callbacks();  // finished ops only; the driver normally got there first
    const std::string err = it->second->error;
    ops_.erase(it);
    if (!err.empty()) throw StrataError(err);
  }

  std::unordered_map<IoTicket, std::unique_ptr<Op>> ops_;
  std::deque<Piece*> pending_;
  std::vector<Op*> notify_;  // ops whose on_done has not run yet
  IoTicket next_ticket_ = 1;
  int64_t in_flight_ = 0;
  int64_t completions_ = 0;
  std::condition_variable work_cv_;  // the driver: work arrived, or stop
  std::condition_variable done_cv_;  // waiters: pieces completed
  std::thread driver_;
  bool stopping_ = false;
  std::string driver_error_;  // a backend failure: every later request fails with it
};

// ---- io_uring ------------------------------------------------------------------------------

constexpr unsigned kMaxFiles = 64;  // sparse registered-file table size

class UringEngine final : public EngineBase {
 public:
  explicit UringEngine(const IoOptions& o) : EngineBase(o) {
    init_rc_ = -o.refuse_uring_errno;
    if (init_rc_ == 0) {
      // Completion queue twice the depth: completions never overflow while resubmissions queue.
      io_uring_params p{};
      p.flags = IORING_SETUP_CQSIZE;
      p.cq_entries = static_cast<unsigned>(2 * o.queue_depth);
      init_rc_ = io_uring_queue_init_params(static_cast<unsigned>(o.queue_depth), &ring_, &p);
    }
    if (init_rc_ < 0) return;
    // A sparse table lets files be registered one by one later (kernel >= 5.19).
    fixed_files_ = io_uring_register_files_sparse(&ring_, kMaxFiles) == 0;
  }
  ~UringEngine() override {
    if (init_rc_ < 0) return;
    stop_driver();
    io_uring_queue_exit(&ring_);
  }
  int init_rc() const { return init_rc_; }
  const char* backend() const override { return "io_uring"; }

  bool register_buffers(const std::vector<iovec>& regions) override {
    STRATA_CHECK(in_flight() == 0, "register_buffers with I/O in flight");
    std::lock_guard<std::mutex> lk(mu_);
    if (!buffers_.empty()) io_uring_unregister_buffers(&ring_);
    buffers_.clear();
    if (regions.empty()) return true;
    const int r =
        io_uring_register_buffers(&ring_, regions.data(), static_cast<unsigned>(regions.size()));
    if (r < 0) {
      log_warn("io_uring_register_buffers(" + std::to_string(regions.size()) +
               " regions) failed: " + errno_text(-r) + "; using unregistered buffers");
      return false;
    }
    for (size_t i = 0; i < regions.size(); ++i)
      buffers_[reinterpret_cast<uintptr_t>(regions[i].iov_base)] = {static_cast<int>(i),
                                                                    regions[i].iov_len};
    return true;
  }

 protected:
  void on_file_registered(int slot, int fd) override {
    if (!fixed_files_) return;
    if (slot >= static_cast<int>(kMaxFiles) ||
        io_uring_register_files_update(&ring_, static_cast<unsigned>(slot), &fd, 1) != 1) {
      // Files beyond the table (or a kernel that refuses the update) use plain descriptors.
      unfixed_.resize(std::max(unfixed_.size(), static_cast<size_t>(slot) + 1), false);
      unfixed_[static_cast<size_t>(slot)] = true;
    }
  }

  void submit(const std::vector<Piece*>& batch) override {
    for (Piece* p : batch) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (!sqe) {  // ring sized for queue_depth, so only if the kernel still holds entries
        io_uring_submit(&ring_);
        sqe = io_uring_get_sqe(&ring_);
        STRATA_CHECK(sqe != nullptr, "io_uring submission queue full");
      }
      const int slot = p->op->slot;
      const bool fixed_file = fixed_files_ && !(static_cast<size_t>(slot) < unfixed_.size() &&
                                                unfixed_[static_cast<size_t>(slot)]);
      const int fd = fixed_file ? slot : p->fd;
      const auto len = static_cast<unsigned>(p->len);
      const int bi = buffer_index(p->buf, p->len);
      if (p->op->is_write) {
        if (bi >= 0)
          io_uring_prep_write_fixed(sqe, fd, p->buf, len, static_cast<uint64_t>(p->offset), bi);
        else
          io_uring_prep_write(sqe, fd, p->buf, len, static_cast<uint64_t>(p->offset));
      } else {
        if (bi >= 0)
          io_uring_prep_read_fixed(sqe, fd, p->buf, len, static_cast<uint64_t>(p->offset), bi);
        else
          io_uring_prep_read(sqe, fd, p->buf, len, static_cast<uint64_t>(p->offset));
      }
      if (fixed_file) {
        sqe->flags |= IOSQE_FIXED_FILE;
        ++stats_.fixed_file_pieces;
      }
      if (bi >= 0) ++stats_.fixed_buffer_pieces;
      io_uring_sqe_set_data(sqe, p);
    }
    for (;;) {
      const int r = io_uring_submit(&ring_);
      if (r >= 0) break;
      if (r == -EINTR || r == -EAGAIN || r == -EBUSY) {
        std::this_thread::yield();
        continue;
      }
      throw StrataError("io_uring_submit failed: " + errno_text(-r));
    }
  }

  void reap(bool block, std::vector<std::pair<Piece*, int>>& out) override {
    io_uring_cqe* cqe = nullptr;
    if (block) {
      int r;
      do r = io_uring_wait_cqe(&ring_, &cqe);
      while (r == -EINTR);
      if (r < 0) throw StrataError("io_uring_wait_cqe failed: " + errno_text(-r));
    }
    unsigned head, n = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      out.emplace_back(static_cast<Piece*>(io_uring_cqe_get_data(cqe)), cqe->res);
      ++n;
    }
    io_uring_cq_advance(&ring_, n);
  }

 private:
  // Index of the registered buffer wholly containing [buf, buf+len), or -1.
  int buffer_index(const char* buf, int64_t len) const {
    if (buffers_.empty()) return -1;
    const auto a = reinterpret_cast<uintptr_t>(buf);
    auto it = buffers_.upper_bound(a);
    if (it == buffers_.begin()) return -1;
    --it;
    if (a + static_cast<uintptr_t>(len) <= it->first + it->second.second) return it->second.first;
    return -1;
  }

  io_uring ring_{};
  int init_rc_ = 0;
  bool fixed_files_ = false;
  std::vector<bool> unfixed_;
  std::map<uintptr_t, std::pair<int, size_t>> buffers_;  // start -> (index, length)
};

// ---- threads (pread/pwrite) ----------------------------------------------------------------

class ThreadEngine final : public EngineBase {
 public:
  explicit ThreadEngine(const IoOptions& o) : EngineBase(o) {
    const int n = std::max(1, std::min(o.threads, o.queue_depth));
    for (int i = 0; i < n; ++i) workers_.emplace_back([this] { run(); });
  }
  ~ThreadEngine() override {
    stop_driver();
    {
      std::lock_guard<std::mutex> lk(pool_mu_);
      stop_ = true;
    }
    pool_work_cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  const char* backend() const override { return "threads"; }
  bool register_buffers(const std::vector<iovec>&) override { return true; }  // nothing to pin
  bool reap_ok_after_failure() const override { return true; }

 protected:
  void on_file_registered(int, int) override {}

  void submit(const std::vector<Piece*>& batch) override {
    {
      std::lock_guard<std::mutex> lk(pool_mu_);
      for (Piece* p : batch) work_.push_back(p);
    }
    if (batch.size() == 1)
      pool_work_cv_.notify_one();
    else
      pool_work_cv_.notify_all();
  }

  void reap(bool block, std::vector<std::pair<Piece*, int>>& out) override {
    std::unique_lock<std::mutex> lk(pool_mu_);
    if (block) pool_done_cv_.wait(lk, [&] { return !completed_.empty(); });
    for (auto& d : completed_) out.push_back(d);
    completed_.clear();
  }

 private:
  void run() {
    for (;;) {
      Piece* p;
      {
        std::unique_lock<std::mutex> lk(pool_mu_);
        pool_work_cv_.wait(lk, [&] { return stop_ || !work_.empty(); });
        if (work_.empty()) return;  // stop_ with nothing left
        p = work_.front();
        work_.pop_front();
      }
      if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
      const int fd = p->fd;
      const auto len = static_cast<size_t>(p->len);
      const ssize_t r = p->op->is_write ? ::pwrite(fd, p->buf, len, p->offset)
                                        : ::pread(fd, p->buf, len, p->offset);
      const int res = r < 0 ? -errno : static_cast<int>(r);
      {
        std::lock_guard<std::mutex> lk(pool_mu_);
        completed_.emplace_back(p, res);
      }
      pool_done_cv_.notify_one();
    }
  }

  std::mutex pool_mu_;  // the workers' queue (not EngineBase::mu_)
  std::condition_variable pool_work_cv_, pool_done_cv_;
  std::deque<Piece*> work_;
  std::vector<std::pair<Piece*, int>> completed_;  // (piece, result) awaiting reap
  bool stop_ = false;
  std::vector<std::thread> workers_;
  // Test only: STRATA_IO_DELAY_MS makes every piece take that long, standing in for a hung
  // device in the stop-signal tests (tests/e2e/stop_signals.sh).
  const int64_t delay_ms_ = [] {
    const char* v = std::getenv("STRATA_IO_DELAY_MS");
    return v ? std::max<int64_t>(0, std::atoll(v)) : 0;
  }();
};

void warn_fallback_once(const std::string& why) {
  static std::once_flag once;
  std::call_once(once, [&] {
    log_warn("io_uring unavailable (" + why + "); using the pread/pwrite thread-pool backend");
  });
}

}  // namespace

std::unique_ptr<IoEngine> IoEngine::create(const IoOptions& options) {
  IoOptions o = options;
  if (o.backend == IoBackend::automatic) {
    if (const char* env = std::getenv("STRATA_IO_BACKEND")) {
      o.backend = parse_io_backend(env);
      // Say so once: a forced backend otherwise leaves no trace in the log of a run.
      if (o.backend != IoBackend::automatic) {
        static std::once_flag once;
        std::call_once(once, [&] {
          log_info(std::string("STRATA_IO_BACKEND=") + env + ": using the " +
                   (o.backend == IoBackend::threads ? "pread/pwrite thread-pool" : "io_uring") +
                   " I/O backend");
        });
      }
    }
  }
  if (o.backend == IoBackend::threads) return std::make_unique<ThreadEngine>(o);

  auto uring = std::make_unique<UringEngine>(o);
  const int r = uring->init_rc();
  if (r < 0) {
    const std::string why = "io_uring_queue_init: " + errno_text(-r);
    if (o.backend == IoBackend::io_uring)
      throw StrataError("io_uring backend requested but " + why);
    warn_fallback_once(why + (r == -EPERM ? ", often a container seccomp policy" : ""));
    return std::make_unique<ThreadEngine>(o);
  }
  return uring;
}

bool io_uring_supported() {
  static const bool ok = [] {
    IoOptions o;
    o.backend = IoBackend::io_uring;
    try {
      IoEngine::create(o);
      return true;
    } catch (const StrataError&) {
      return false;
    }
  }();
  return ok;
}

}  // namespace strata
