#pragma once
// Asynchronous direct I/O for activation swapping and offload. Files are opened with O_DIRECT so
// swapped-out activations do not also occupy the page cache (that would defeat the point of
// swapping them out), which makes every buffer, offset and length carry the file system's
// alignment. Two backends serve one interface:
//   io_uring  registered files and buffers, batched submission, up to queue_depth in flight;
//   threads   pread/pwrite on a small worker pool, for kernels or containers that refuse
//             io_uring (seccomp commonly answers -EPERM) or when STRATA_IO_BACKEND=threads.
// A request is split into block_size pieces; every completion is checked: a short transfer is
// resubmitted for the remainder (from the aligned offset at or below where it stopped), -EAGAIN
// is resubmitted, anything else fails the request with a StrataError naming file, offset and
// errno text. The engine is driven by one thread (the one that calls write/read/wait).
#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace strata {

enum class IoBackend { automatic, io_uring, threads };
IoBackend parse_io_backend(const std::string& s);  // "auto" | "io_uring" | "threads"

// Test-only fault injection, applied to the fault_nth-th completion (1-based) the engine sees
// (and every fault_nth-th when fault_repeat): `short_transfer` reports half the bytes the kernel
// moved plus one (so the stop point is never aligned and the resume must round down to the
// alignment; pieces of one alignment unit are left whole), `eagain` reports -EAGAIN. Both must
// be recovered from transparently.
enum class IoFault { none, short_transfer, eagain };

struct IoOptions {
  // automatic: io_uring, else threads (warned once). STRATA_IO_BACKEND overrides `automatic`.
  IoBackend backend = IoBackend::automatic;
  int queue_depth = 32;          // most block requests in flight
  int64_t block_size = 1 << 20;  // requests are split into pieces of at most this many bytes
  int threads = 4;               // workers of the threads backend (capped by queue_depth)
  IoFault fault = IoFault::none;
  int64_t fault_nth = 0;
  bool fault_repeat = false;
  // Test-only: act as if io_uring_queue_init returned -refuse_uring_errno (e.g. EPERM).
  int refuse_uring_errno = 0;
};

using IoTicket = uint64_t;

struct IoStats {
  int64_t requests = 0;             // write()/read() calls
  int64_t pieces = 0;               // block requests submitted (resubmissions included)
  int64_t bytes = 0;                // bytes completed
  int64_t short_retries = 0;        // short transfers resubmitted
  int64_t eagain_retries = 0;       // -EAGAIN resubmitted
  int64_t submit_batches = 0;       // submission calls (io_uring_submit / worker wake-ups)
  int64_t fixed_buffer_pieces = 0;  // io_uring: pieces inside a registered buffer
  int64_t fixed_file_pieces = 0;    // io_uring: pieces on a registered file
};

// How a file's direct-I/O alignment was found, in order of preference.
enum class AlignSource { statx_dioalign, blkszget, sysfs_logical_block, st_blksize };
const char* align_source_name(AlignSource s);

struct DioAlignment {
  int64_t mem = 4096;     // buffer address alignment
  int64_t offset = 4096;  // file offset and length alignment
  AlignSource source = AlignSource::st_blksize;
};
// statx(STATX_DIOALIGN) when kernel and file system report it (Linux >= 6.1; ext4, xfs, btrfs);
// else the logical block size of the backing device: ioctl(BLKSSZGET) on /dev/block/MAJ:MIN,
// then /sys/dev/block/MAJ:MIN/.../queue/logical_block_size (containers often lack /dev nodes);
// else st_blksize, which over-aligns (it is the preferred, not the minimum, I/O size) but is safe.
DioAlignment query_dio_alignment(int fd);

// The padded length a caller writes for `bytes` of payload: direct I/O moves whole aligned units.
inline int64_t io_padded_size(int64_t bytes, int64_t alignment) {
  return (bytes + alignment - 1) / alignment * alignment;
}

class IoEngine {
 public:
  // The io_uring engine, or the threads engine per options.backend / STRATA_IO_BACKEND / what the
  // kernel allows. Throws StrataError when io_uring is demanded but unavailable.
  static std::unique_ptr<IoEngine> create(const IoOptions& options = {});
  virtual ~IoEngine() = default;

  // Opens `path` with O_DIRECT (created when `create`; `capacity` > 0 preallocates that many
  // bytes, so swap writes do not allocate blocks on the critical path) and returns its slot.
  virtual int register_file(const std::string& path, bool create, int64_t capacity = 0) = 0;
  // Registers host buffers (e.g. HostPool::regions()) so reads/writes inside them skip the
  // per-request page pinning. Replaces any previous set; needs no I/O in flight. Buffers outside
  // the set still work, unregistered. Returns false (and warns) when the kernel refuses. The
  // kernel holds its own reference to registered pages: re-register after the pool trims.
  virtual bool register_buffers(const std::vector<iovec>& regions) = 0;

  // Start a transfer and return at once. buf, offset and bytes must be aligned (alignment(slot));
  // the buffer must stay valid until wait() returns for the ticket.
  // `on_done(ok)`, when given, runs on the engine's driver thread as soon as the transfer has
  // finished (before wait() returns for it), with the engine's lock held: keep it short and make
  // no engine calls from it. It lets a caller free a write's source without waiting for it.
  virtual IoTicket write(int file_slot, int64_t offset, const void* buf, int64_t bytes,
                         std::function<void(bool ok)> on_done = {}) = 0;
  virtual IoTicket read(int file_slot, int64_t offset, void* buf, int64_t bytes) = 0;
  // Block until the ticket completes; throws StrataError if it failed. Each ticket once.
  virtual void wait(IoTicket ticket) = 0;
  // Progress without blocking; true once the ticket is complete (then call wait to collect it).
  virtual bool poll(IoTicket ticket) = 0;
  // Wait for every outstanding ticket; throws the first failure after all have finished.
  virtual void wait_all() = 0;

  virtual const char* backend() const = 0;  // "io_uring" or "threads"
  virtual const DioAlignment& alignment(int file_slot) const = 0;
  virtual const std::string& path(int file_slot) const = 0;
  // The file's descriptor, for metadata checks (fstat, lseek SEEK_HOLE); do no I/O through it.
  virtual int native_fd(int file_slot) const = 0;
  virtual IoStats stats() const = 0;
  virtual int64_t in_flight() const = 0;
};

// Whether this kernel/container lets a process create an io_uring at all (containers often
// forbid it); probed once and cached. Where it does not, IoBackend::automatic uses threads.
bool io_uring_supported();

}  // namespace strata
