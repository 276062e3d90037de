#include "offload/tier.h"

#include <numa.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <iterator>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/crc32c.h"
#include "core/error.h"
#include "core/log.h"
#include "core/memory.h"
#include "core/stop_wait.h"
#include "offload/host_pool.h"

namespace strata {

namespace fs = std::filesystem;

SwapTierKind parse_swap_tier(const std::string& s) {
  if (s == "host") return SwapTierKind::host;
  if (s == "nvme") return SwapTierKind::nvme;
  if (s == "cxl") return SwapTierKind::cxl;
  throw InputError("offload.tier: expected host, nvme or cxl, got '" + s + "'");
}

const char* swap_tier_name(SwapTierKind k) {
  switch (k) {
    case SwapTierKind::host:
      return "host";
    case SwapTierKind::nvme:
      return "nvme";
    case SwapTierKind::cxl:
      return "cxl";
  }
  return "?";
}

void SwapTier::throw_full(int64_t more) const {
  const std::string file = path().empty() ? "" : " (file '" + path() + "')";
  throw StrataError("swap tier " + std::string(name()) + file +
                    " is full: " + format_bytes(bytes_used()) + " held + " + format_bytes(more) +
                    " requested exceeds its capacity of " + format_bytes(capacity_) +
                    " (offload.capacity_gb)");
}

SwapTier::Handle SwapTier::write_buffer(FloatBuffer&& buf) {
  const Handle h = write(buf.data(), buf.bytes());
  buf.reset();
  return h;
}

namespace {

// ---------------------------------------------------------------------------------------------
// host and cxl: the payload is copied into memory the tier owns: a page-locked HostPool block
// (host) or memory bound to the NUMA node (cxl). write_buffer() hands the buffer to a copier
// thread that copies it out and frees it while the caller computes; prefetch() queues the copy
// back into a fresh activation buffer the same way, so both directions overlap compute like the
// nvme tier's I/O. A buffer whose copy-out has not started when it is read is handed back as it is
// (never copied). write() and read() copy on the caller's thread.
class MemoryTier : public SwapTier {
 public:
  // node < 0: HostPool memory; else memory bound to that NUMA node.
  MemoryTier(int64_t capacity, int node) : SwapTier(capacity), node_(node) {
    copier_ = std::thread([this] { run(); });
  }
  ~MemoryTier() override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    work_cv_.notify_all();
    copier_.join();
    for (auto& [h, s] : live_)
      if (s.p) free_mem(s.p, s.bytes);
  }

  Handle write(const float* src, int64_t bytes) override {
    std::lock_guard<std::mutex> lk(mu_);
    check_capacity(bytes);
    Slot s;
    s.bytes = bytes;
    s.p = alloc_mem(bytes);
    std::memcpy(s.p, src, static_cast<size_t>(bytes));
    s.state = State::stored;
    return add(std::move(s));
  }

  Handle write_buffer(FloatBuffer&& buf) override {
    std::lock_guard<std::mutex> lk(mu_);
    check_capacity(buf.bytes());
    Slot s;
    s.bytes = buf.bytes();
    buf.set_category(MemCategory::io);  // the tier's until copied out (or handed back)
    s.src = std::move(buf);
    s.state = State::out_queued;
    const Handle h = add(std::move(s));
    jobs_.push_back(h);
    work_cv_.notify_one();
    return h;
  }

  void prefetch(Handle h) override {
    std::lock_guard<std::mutex> lk(mu_);
    Slot& s = at(h);
    if (s.state != State::stored) return;  // still in memory, or already on its way back
    s.state = State::in_queued;
    jobs_.push_back(h);
    work_cv_.notify_one();
  }

  FloatBuffer read_buffer(Handle h, MemCategory cat) override {
    std::unique_lock<std::mutex> lk(mu_);
    Slot& s = settled(lk, h);
    FloatBuffer out;
    if (s.state == State::out_queued) {
      out = std::move(s.src);  // never left: handed back as it is
    } else if (s.state == State::returned) {
      out = std::move(s.back);
    } else {  // not prefetched: copy back here
      out =
          FloatBuffer(s.bytes / static_cast<int64_t>(sizeof(float)), cat, FloatBuffer::kPageAlign);
      std::memcpy(out.data(), s.p, static_cast<size_t>(s.bytes));
    }
    out.set_category(cat);
    erase(h);
    return out;
  }

  void read(Handle h, float* dst) override {
    std::unique_lock<std::mutex> lk(mu_);
    Slot& s = settled(lk, h);
    const void* src = s.state == State::out_queued ? static_cast<const void*>(s.src.data())
                      : s.state == State::returned ? static_cast<const void*>(s.back.data())
                                                   : s.p;
    std::memcpy(dst, src, static_cast<size_t>(s.bytes));
    erase(h);
  }

  void discard(Handle h) override {
    std::unique_lock<std::mutex> lk(mu_);
    settled(lk, h);
    erase(h);
  }

  // Until the copier has taken the copy out (a failed copy leaves the slot out_queued: done too).
  void wait_written(Handle h) override {
    std::unique_lock<std::mutex> lk(mu_);
    wait_or_stop(
        done_cv_, lk,
        [&] {
          auto it = live_.find(h);
          return it == live_.end() || (it->second.state != State::copying_out &&
                                       std::find(jobs_.begin(), jobs_.end(), h) == jobs_.end());
        },
        "the swap tier's copy");
  }

  void trim() override { pool_.trim(); }
  HostPoolStats pool_stats() const override { return pool_.stats(); }
  const char* name() const override { return node_ < 0 ? "host" : "cxl"; }
  int64_t bytes_used() const override { return used_; }

 private:
  // out_queued -> copying_out -> stored -> in_queued -> copying_in -> returned; write() starts at
  // stored. Only the copier moves a slot through copying_*; readers wait those out.
  enum class State { out_queued, copying_out, stored, in_queued, copying_in, returned };
  struct Slot {
    int64_t bytes = 0;
    State state = State::stored;
    FloatBuffer src;    // out_queued: the handed-over buffer
    void* p = nullptr;  // stored..copying_in: the tier's copy
    FloatBuffer back;   // returned: the copy back
  };

  Handle add(Slot&& s) {
    used_ += s.bytes;
    live_.emplace(next_, std::move(s));
    return next_++;
  }
  Slot& at(Handle h) {
    auto it = live_.find(h);
    STRATA_CHECK(it != live_.end(), "unknown swap handle " + std::to_string(h));
    return it->second;
  }
  // The slot once no copy of it is running.
  Slot& settled(std::unique_lock<std::mutex>& lk, Handle h) {
    Slot& s = at(h);  // unordered_map nodes do not move: the reference stays valid
    wait_or_stop(
        done_cv_, lk, [&] { return s.state != State::copying_out && s.state != State::copying_in; },
        "the swap tier's copy");
    return s;
  }
  void erase(Handle h) {
    Slot& s = at(h);
    if (s.p) free_mem(s.p, s.bytes);
    used_ -= s.bytes;
    live_.erase(h);
  }

  void* alloc_mem(int64_t bytes) {
    if (node_ < 0) return pool_.alloc(bytes);
    // Charged as io like the host tier: it is memory, only not activation memory.
    MemoryTracker::instance().charge(MemCategory::io, bytes);
    void* p = numa_alloc_onnode(static_cast<size_t>(bytes), node_);
    if (!p) {
      MemoryTracker::instance().release(MemCategory::io, bytes);
      throw StrataError("swap tier cxl: numa_alloc_onnode(" + format_bytes(bytes) + ", node " +
                        std::to_string(node_) + ") failed");
    }
    return p;
  }
  void free_mem(void* p, int64_t bytes) {
    if (node_ < 0) {
      pool_.free(p);
    } else {
      numa_free(p, static_cast<size_t>(bytes));
      MemoryTracker::instance().release(MemCategory::io, bytes);
    }
  }

  // The copier: one job at a time, copying with the lock released. A copy that cannot get memory
  // leaves the data where it is (in memory: correct, only not moved) and says so once.
  void run() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      work_cv_.wait(lk, [&] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      const Handle h = jobs_.front();
      jobs_.pop_front();
      auto it = live_.find(h);
      if (it == live_.end()) continue;
      Slot& s = it->second;
      const int64_t bytes = s.bytes;
      std::string failed;
      if (s.state == State::out_queued) {
        s.state = State::copying_out;
        const void* from = s.src.data();
        lk.unlock();
        void* p = nullptr;
        try {
          p = alloc_mem(bytes);
          std::memcpy(p, from, static_cast<size_t>(bytes));
        } catch (const std::exception& e) {
          failed = e.what();
        }
        lk.lock();
        if (p) {
          s.p = p;
          s.src.reset();
          s.state = State::stored;
        } else {
          s.state = State::out_queued;  // stays in memory
        }
      } else if (s.state == State::in_queued) {
        s.state = State::copying_in;
        const void* from = s.p;
        lk.unlock();
        FloatBuffer back;
        try {
          back = FloatBuffer(bytes / static_cast<int64_t>(sizeof(float)), MemCategory::activations,
                             FloatBuffer::kPageAlign);
          std::memcpy(back.data(), from, static_cast<size_t>(bytes));
        } catch (const std::exception& e) {
          failed = e.what();
        }
        lk.lock();
        if (back.data()) {
          s.back = std::move(back);
          free_mem(s.p, bytes);
          s.p = nullptr;
          s.state = State::returned;
        } else {
          s.state = State::stored;  // the reader copies it back itself
        }
      }
      if (!failed.empty() && !warned_) {
        warned_ = true;
        log_warn(std::string("swap tier ") + name() + ": a background copy failed (" + failed +
                 "); the data stays where it was");
      }
      done_cv_.notify_all();
    }
  }

  int node_;
  HostPool pool_;
  std::mutex mu_;  // live_, jobs_, next_, used_, stop_
  std::condition_variable work_cv_, done_cv_;
  std::unordered_map<Handle, Slot> live_;
  std::deque<Handle> jobs_;
  Handle next_ = 0;
  int64_t used_ = 0;
  bool stop_ = false;
  bool warned_ = false;
  std::thread copier_;
};

// ---------------------------------------------------------------------------------------------
// nvme: one O_DIRECT file; space is handed out in aligned extents (first fit, freed extents
// coalesce, the file's high-water mark shrinks back when its last extent is freed).
//
// Writes come in two ways. write_buffer() of a page-aligned, page-padded FloatBuffer (what
// SavedTensors allocates) is zero-copy: the I/O goes straight from the buffer, which the tier holds
// (charged to io) until the engine's driver frees it the moment the write lands. write(src) copies
// into a page-aligned HostPool staging block padded to the file's alignment, freed by poll().
// While the source is still in memory, a read of the handle is served from it, not the device.
//
// Reads land in a fresh page-aligned FloatBuffer (charged to activations: it becomes one) issued
// by prefetch(); read_buffer() hands it over as it is, read() copies out of it.
class NvmeTier : public SwapTier {
 public:
  explicit NvmeTier(const SwapOptions& o) : SwapTier(o.capacity_bytes), checksums_(o.checksums) {
    std::error_code ec;
    fs::create_directories(o.dir, ec);
    if (ec)
      throw StrataError("offload.dir: cannot create swap directory '" + o.dir +
                        "': " + ec.message());
    remove_stale_swap_files(o.dir);
    {
      // The file is not preallocated, so a capacity beyond the free space only shows as ENOSPC
      // in the middle of a step: say so now.
      struct statvfs fsinfo {};
      if (::statvfs(o.dir.c_str(), &fsinfo) == 0) {
        const int64_t free_bytes =
            static_cast<int64_t>(fsinfo.f_bavail) * static_cast<int64_t>(fsinfo.f_frsize);
        if (free_bytes < o.capacity_bytes)
          log_warn("swap tier nvme: offload.capacity_gb (" + format_bytes(o.capacity_bytes) +
                   ") is more than the free space of '" + o.dir + "' (" + format_bytes(free_bytes) +
                   "): a step that swaps more fails with 'No space left on device'");
      }
    }
    path_ = swap_file_path(o.dir, o.rank);
    engine_ = IoEngine::create(o.io);
    try {
      // No preallocation: capacity is a cap, not a reservation of offload.capacity_gb on disk.
      slot_ = engine_->register_file(path_, true, 0);
    } catch (...) {
      ::unlink(path_.c_str());  // open may have created it before failing
      throw;
    }
    const DioAlignment& a = engine_->alignment(slot_);
    align_ = a.offset;
    mem_align_ = a.mem;
    if (a.mem > HostPool::kAlignment || a.offset > FloatBuffer::kPageAlign ||
        FloatBuffer::kPageAlign % a.offset != 0) {
      engine_.reset();
      ::unlink(path_.c_str());
      throw StrataError("swap file '" + path_ + "' needs " + std::to_string(a.mem) +
                        "-byte aligned buffers and " + std::to_string(a.offset) +
                        "-byte aligned offsets; swap buffers are 4096-byte aligned");
    }
    log_info("swap tier nvme: direct I/O through " + std::string(engine_->backend()) + " on " +
             path_ + " (" + std::to_string(a.offset) + "-byte alignment, from " +
             align_source_name(a.source) + ")");
    align_ = extent_granularity(engine_->native_fd(slot_), align_);
  }

  // Extents begin and end on whole file-system blocks (up to a page), not only on the direct-I/O
  // alignment: then no block holds two extents' data. A swap file truncated under the run loses a
  // live extent; when a later write re-extends the file, a write into a block the lost extent
  // shared would allocate that block again, and the lost bytes would read back as zeros with no
  // hole for verify() to find (ext4's 4096-byte blocks under 512-byte direct I/O).
  static int64_t extent_granularity(int fd, int64_t dio_align) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return dio_align;
    const int64_t block = std::min<int64_t>(st.st_blksize, FloatBuffer::kPageAlign);
    const bool usable =
        block > dio_align && block % dio_align == 0 && FloatBuffer::kPageAlign % block == 0;
    return usable ? block : dio_align;
  }

  ~NvmeTier() override {
    // Everything in flight must land before its buffer is freed and before the file is removed;
    // a failure here is moot (the data is being thrown away).
    try {
      engine_->wait_all();
    } catch (const std::exception& e) {
      log_warn(std::string("swap tier nvme: I/O failed while closing: ") + e.what());
    }
    for (auto& [h, x] : live_)
      if (x.wstage) pool_.free(x.wstage);
    live_.clear();
    engine_.reset();  // closes the file
    ::unlink(path_.c_str());
  }

  Handle write(const float* src, int64_t bytes) override {
    poll();
    const int64_t padded = io_padded_size(bytes, align_);
    Extent x;
    x.bytes = bytes;
    x.padded = padded;
    x.offset = alloc_extent(padded);
    try {
      x.wstage = pool_.alloc(padded);
      std::memcpy(x.wstage, src, static_cast<size_t>(bytes));
      // The padding goes to disk too: zero it rather than write stale pool bytes.
      std::memset(static_cast<char*>(x.wstage) + bytes, 0, static_cast<size_t>(padded - bytes));
      if (checksums_) x.crc = crc32c(x.wstage, static_cast<size_t>(bytes));
      x.wticket = engine_->write(slot_, x.offset, x.wstage, padded);
    } catch (...) {
      if (x.wstage) pool_.free(x.wstage);
      free_extent(x.offset, padded);
      throw;
    }
    return add(std::move(x));
  }

  Handle write_buffer(FloatBuffer&& buf) override {
    const int64_t bytes = buf.bytes();
    const int64_t padded = io_padded_size(bytes, align_);
    const bool direct =
        reinterpret_cast<uintptr_t>(buf.data()) % mem_align_ == 0 && buf.capacity_bytes() >= padded;
    if (!direct) return SwapTier::write_buffer(std::move(buf));  // staged copy
    const MemCategory caller_category = buf.category();
    poll();
    Extent x;
    x.bytes = bytes;
    x.padded = padded;
    x.offset = alloc_extent(padded);
    try {
      // The padding goes to disk too: zero it (it is, from allocation, unless a caller wrote past
      // the payload) so no stale bytes reach the file.
      std::memset(reinterpret_cast<char*>(buf.data()) + bytes, 0,
                  static_cast<size_t>(padded - bytes));
      if (checksums_) x.crc = crc32c(buf.data(), static_cast<size_t>(bytes));
      buf.set_category(MemCategory::io);
      x.wbuf = std::make_shared<Retiring>();
      x.wbuf->buf = std::move(buf);
      // Freed by the engine's driver the moment the write lands, not at the next poll(): that
      // memory is what swapping is for. A failed write keeps it (read_buffer reports the error).
      x.wticket =
          engine_->write(slot_, x.offset, x.wbuf->buf.data(), padded, [r = x.wbuf](bool ok) {
            if (!ok) return;
            std::lock_guard<std::mutex> lk(r->mu);
            r->buf.reset();
          });
    } catch (...) {
      if (x.wbuf) buf = std::move(x.wbuf->buf);  // the caller's again (nothing was submitted)
      buf.set_category(caller_category);
      free_extent(x.offset, padded);
      throw;
    }
    return add(std::move(x));
  }

  void prefetch(Handle h) override {
    Extent& x = at(h);
    if (in_memory(x) || x.rbuf.data()) return;  // never left memory, or already on its way
    x.rbuf = FloatBuffer(x.bytes / static_cast<int64_t>(sizeof(float)), MemCategory::activations,
                         FloatBuffer::kPageAlign);
    try {
      x.rticket = engine_->read(slot_, x.offset, x.rbuf.data(), x.padded);
    } catch (...) {
      x.rbuf.reset();
      throw;
    }
  }

  FloatBuffer read_buffer(Handle h, MemCategory cat) override {
    Extent& x = at(h);
    FloatBuffer out = take_unretired(x);
    if (out.data()) {
      collect(x.wticket);  // the extent must not be reused while the write still runs
    } else if (x.wstage) {
      collect(x.wticket);
      out =
          FloatBuffer(x.bytes / static_cast<int64_t>(sizeof(float)), cat, FloatBuffer::kPageAlign);
      std::memcpy(out.data(), x.wstage, static_cast<size_t>(x.bytes));
    } else {
      await_device_read(h);
      out = std::move(x.rbuf);
    }
    out.set_category(cat);
    drop(h);
    return out;
  }

  void read(Handle h, float* dst) override {
    Extent& x = at(h);
    const FloatBuffer still = take_unretired(x);
    const void* src = nullptr;
    if (still.data() || x.wstage) {
      collect(x.wticket);
      src = x.wstage ? x.wstage : still.data();
    } else {
      await_device_read(h);
      src = x.rbuf.data();
    }
    std::memcpy(dst, src, static_cast<size_t>(x.bytes));
    drop(h);
  }

  void discard(Handle h) override {
    Extent& x = at(h);
    // The transfers cannot be cancelled: let them finish before the extent and buffers are reused.
    // Their failure does not matter (the data is not needed), and discard runs while unwinding
    // from another error, which it must not replace.
    try {
      collect(x.wticket);
    } catch (const StrataError&) {
    }
    try {
      collect(x.rticket);
    } catch (const StrataError&) {
    }
    drop(h);
  }

  void wait_written(Handle h) override {
    auto it = live_.find(h);
    if (it == live_.end()) return;  // read back or discarded: its write was collected then
    Extent& x = it->second;
    collect(x.wticket);
    if (x.wstage) pool_.free(x.wstage);
    x.wstage = nullptr;
    x.wbuf.reset();  // freed by the engine's driver as the write landed
  }

  void poll() override {
    std::erase_if(writing_, [&](Handle h) {
      auto it = live_.find(h);
      if (it == live_.end()) return true;  // read or discarded meanwhile
      Extent& x = it->second;
      if (x.wticket && !engine_->poll(x.wticket)) return false;
      collect(x.wticket);
      if (x.wstage) pool_.free(x.wstage);
      x.wstage = nullptr;
      x.wbuf.reset();  // already freed by the engine's driver; drop the husk
      return true;
    });
  }

  void trim() override {
    poll();
    pool_.trim();
  }
  HostPoolStats pool_stats() const override { return pool_.stats(); }
  const char* name() const override { return "nvme"; }
  std::string path() const override { return path_; }
  int64_t bytes_used() const override { return used_; }

 private:
  // A write_buffer() source: the engine's driver frees it when the write lands (under mu).
  struct Retiring {
    std::mutex mu;
    FloatBuffer buf;
  };
  struct Extent {
    int64_t offset = 0, bytes = 0, padded = 0;
    // The write's source until the write is retired: a staging block (write) or the caller's
    // buffer (write_buffer).
    void* wstage = nullptr;
    std::shared_ptr<Retiring> wbuf;
    IoTicket wticket = 0;
    FloatBuffer rbuf;  // the read's destination once a read is issued
    IoTicket rticket = 0;
    uint32_t crc = 0;  // CRC-32C of the payload as written
  };

  // Waits for a transfer. The ticket is consumed (zeroed) first, so that after a failure a later
  // discard() of the handle does not wait on it again; engine errors get the tier's name.
  void collect(IoTicket& t) {
    if (!t) return;
    const IoTicket ticket = t;
    t = 0;
    try {
      engine_->wait(ticket);
    } catch (const StrataError& e) {
      throw StrataError(std::string("swap tier nvme: ") + e.what(), e.code());
    }
  }

  // Data read back from the device must be what was written. A swap file truncated under the
  // run and re-extended by a later write reads back as zeros from a hole, with no I/O error at
  // all; the read would look fine. Nothing of ours writes into a live extent, so once the read
  // is done, a hole in the extent (lseek SEEK_HOLE) or a file that ends before it means the data
  // read may not be ours: an error, never a wrong result. Two system calls per tensor. With
  // offload.checksums the payload's CRC-32C is checked as well (catches overwrites too).
  void verify(const Extent& x) const {
    const int fd = engine_->native_fd(slot_);
    const int64_t end = x.offset + x.padded;
    struct stat st {};
    std::string why;
    if (::fstat(fd, &st) != 0) {
      why = std::string("fstat failed: ") + std::strerror(errno);
    } else if (st.st_size < end) {
      why = "the file is " + std::to_string(st.st_size) + " bytes long, short of the extent's end";
    } else {
      const off_t hole = ::lseek(fd, static_cast<off_t>(x.offset), SEEK_HOLE);
      if (hole >= 0 && hole < end) why = "the extent has a hole at offset " + std::to_string(hole);
    }
    if (why.empty() && checksums_) {
      const uint32_t got = crc32c(x.rbuf.data(), static_cast<size_t>(x.bytes));
      if (got != x.crc) {
        char crcs[64];
        std::snprintf(crcs, sizeof crcs, "CRC-32C %08x, written %08x", got, x.crc);
        why = std::string("the data differ from what was written (") + crcs + ")";
      }
    }
    if (why.empty()) return;
    throw StrataError("swap tier nvme: data read back from '" + path_ + "' at offset " +
                      std::to_string(x.offset) + " (" + std::to_string(x.bytes) + " bytes): " +
                      why + "; the swap file was truncated or overwritten under the run");
  }

  // The handle's data from the device, checked, in x.rbuf (its write landed and its source is
  // gone; the read was issued by prefetch() or is issued now).
  void await_device_read(Handle h) {
    Extent& x = at(h);
    collect(x.wticket);  // landed: only the ticket is left to collect
    if (!x.rbuf.data()) prefetch(h);
    collect(x.rticket);
    verify(x);
  }

  // Whether the write's source is still in memory (then the device is not needed to read it).
  static bool in_memory(const Extent& x) {
    if (x.wstage) return true;
    if (!x.wbuf) return false;
    std::lock_guard<std::mutex> lk(x.wbuf->mu);
    return x.wbuf->buf.data() != nullptr;
  }
  // The write_buffer() source, if the engine has not freed it yet: taken back (the caller waits
  // for the write before reusing the extent).
  static FloatBuffer take_unretired(Extent& x) {
    if (!x.wbuf) return {};
    std::lock_guard<std::mutex> lk(x.wbuf->mu);
    return std::move(x.wbuf->buf);
  }

  Handle add(Extent&& x) {
    live_.emplace(next_, std::move(x));
    writing_.push_back(next_);
    return next_++;
  }

  Extent& at(Handle h) {
    auto it = live_.find(h);
    STRATA_CHECK(it != live_.end(), "unknown swap handle " + std::to_string(h));
    return it->second;
  }

  // Frees the buffers (their transfers are complete) and the extent.
  void drop(Handle h) {
    auto it = live_.find(h);
    Extent& x = it->second;
    if (x.wstage) pool_.free(x.wstage);
    free_extent(x.offset, x.padded);
    live_.erase(it);
  }

  int64_t alloc_extent(int64_t padded) {
    check_capacity(padded);
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < padded) continue;
      const int64_t off = it->first, len = it->second;
      free_.erase(it);
      if (len > padded) free_.emplace(off + padded, len - padded);
      used_ += padded;
      return off;
    }
    // Fragmentation can leave no hole large enough even below capacity: the file must not grow
    // past the capacity either.
    if (end_ + padded > capacity()) throw_full(padded);
    const int64_t off = end_;
    end_ += padded;
    used_ += padded;
    return off;
  }

  void free_extent(int64_t off, int64_t len) {
    used_ -= len;
    auto next = free_.lower_bound(off);
    if (next != free_.end() && next->first == off + len) {
      len += next->second;
      next = free_.erase(next);
    }
    if (next != free_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == off) {
        off = prev->first;
        len += prev->second;
        free_.erase(prev);
      }
    }
    if (off + len == end_)
      end_ = off;
    else
      free_.emplace(off, len);
  }

  std::string path_;
  std::unique_ptr<IoEngine> engine_;
  int slot_ = -1;
  int64_t align_ = 4096;
  int64_t mem_align_ = 4096;
  bool checksums_ = false;
  HostPool pool_;
  std::map<Handle, Extent> live_;
  std::vector<Handle> writing_;      // handles whose write has not been retired
  std::map<int64_t, int64_t> free_;  // offset -> length, below end_
  int64_t end_ = 0;                  // file high-water mark
  int64_t used_ = 0;
  Handle next_ = 0;
};

// The NUMA node of the cxl tier, or -1 to fall back to host memory (auto without a CPU-less
// node). CXL memory expanders show up as NUMA nodes with memory and no CPUs.
int resolve_cxl_node(const std::string& spec) {
  const bool automatic = spec == "auto";
  if (numa_available() < 0) {
    if (automatic) {
      log_warn("offload.cxl_node=auto: NUMA is not available here; the cxl tier uses host memory");
      return -1;
    }
    throw InputError("offload.cxl_node: node " + spec +
                     " does not exist: NUMA is not available on this machine");
  }
  const int max_node = numa_max_node();
  auto exists = [&](int n) {
    return n >= 0 && n <= max_node && numa_bitmask_isbitset(numa_all_nodes_ptr, n);
  };
  if (!automatic) {
    int n = -1;
    const auto [end, ec] = std::from_chars(spec.data(), spec.data() + spec.size(), n);
    if (ec != std::errc() || end != spec.data() + spec.size() || !exists(n))
      throw InputError("offload.cxl_node: NUMA node " + spec +
                       " does not exist (this machine has " +
                       (max_node == 0 ? "node 0" : "nodes 0.." + std::to_string(max_node)) + ")");
    return n;
  }
  for (int n = 0; n <= max_node; ++n) {
    if (!exists(n)) continue;
    bitmask* cpus = numa_allocate_cpumask();
    const bool has_cpu = numa_node_to_cpus(n, cpus) != 0 || numa_bitmask_weight(cpus) > 0;
    numa_free_cpumask(cpus);
    if (!has_cpu && numa_node_size64(n, nullptr) > 0) {
      log_info("offload.cxl_node=auto: using CPU-less NUMA node " + std::to_string(n));
      return n;
    }
  }
  log_warn(
      "offload.cxl_node=auto: no CPU-less NUMA node on this machine; the cxl tier uses host "
      "memory");
  return -1;
}

}  // namespace

std::unique_ptr<SwapTier> SwapTier::create(const SwapOptions& o) {
  switch (o.tier) {
    case SwapTierKind::host:
      return std::make_unique<MemoryTier>(o.capacity_bytes, -1);
    case SwapTierKind::cxl:
      return std::make_unique<MemoryTier>(o.capacity_bytes, resolve_cxl_node(o.cxl_node));
    case SwapTierKind::nvme:
      return std::make_unique<NvmeTier>(o);
  }
  return nullptr;
}

}  // namespace strata
