// The alignment O_DIRECT needs on the swap file's filesystem (offload/io_engine.h
// query_dio_alignment): statx's STATX_DIOALIGN where the kernel has it, else the block device's
// logical block size (ioctl, then sysfs), else st_blksize. Apart from the I/O engine itself:
// it asks the kernel and the device, not the ring.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "offload/io_engine.h"

namespace strata {

namespace {

// Reads one integer from a sysfs file; 0 when absent.
int64_t read_sysfs_int(const std::string& path) {
  std::ifstream in(path);
  int64_t v = 0;
  if (in >> v) return v;
  return 0;
}

}  // namespace

const char* align_source_name(AlignSource s) {
  switch (s) {
    case AlignSource::statx_dioalign:
      return "statx STATX_DIOALIGN";
    case AlignSource::blkszget:
      return "ioctl BLKSSZGET";
    case AlignSource::sysfs_logical_block:
      return "sysfs logical_block_size";
    case AlignSource::st_blksize:
      return "st_blksize";
  }
  return "?";
}

DioAlignment query_dio_alignment(int fd) {
  DioAlignment a;
#ifdef STATX_DIOALIGN
  struct statx stx {};
  if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 && (stx.stx_mask & STATX_DIOALIGN) &&
      stx.stx_dio_offset_align > 0 && stx.stx_dio_mem_align > 0) {
    a.mem = stx.stx_dio_mem_align;
    a.offset = stx.stx_dio_offset_align;
    a.source = AlignSource::statx_dioalign;
    return a;
  }
#endif
  struct stat st {};
  if (fstat(fd, &st) != 0) return a;  // keep the conservative 4 KiB default
  const unsigned maj = major(st.st_dev), min = minor(st.st_dev);
  const std::string dev = std::to_string(maj) + ":" + std::to_string(min);
  int dfd = ::open(("/dev/block/" + dev).c_str(), O_RDONLY | O_CLOEXEC);
  if (dfd >= 0) {
    int lbs = 0;
    const bool ok = ioctl(dfd, BLKSSZGET, &lbs) == 0 && lbs > 0;
    ::close(dfd);
    if (ok) {
      a.mem = a.offset = lbs;
      a.source = AlignSource::blkszget;
      return a;
    }
  }
  // A partition has no queue/ of its own; its parent disk's applies.
  int64_t lbs = read_sysfs_int("/sys/dev/block/" + dev + "/queue/logical_block_size");
  if (lbs <= 0) lbs = read_sysfs_int("/sys/dev/block/" + dev + "/../queue/logical_block_size");
  if (lbs > 0) {
    a.mem = a.offset = lbs;
    a.source = AlignSource::sysfs_logical_block;
    return a;
  }
  if (st.st_blksize > 0) a.mem = a.offset = st.st_blksize;
  a.source = AlignSource::st_blksize;
  return a;
}

}  // namespace strata
