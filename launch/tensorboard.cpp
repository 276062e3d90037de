#include "launch/tensorboard.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/crc32c.h"
#include "core/error.h"
#include "core/trace.h"

namespace strata {

namespace {

// TFRecord's masked CRC: a CRC stored next to data that itself holds CRCs is rotated and offset,
// so a CRC of a record containing CRCs does not degenerate.
uint32_t masked_crc(const void* data, size_t n) {
  const uint32_t crc = crc32c(data, n);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

// Protobuf wire format: varints, and keys of (field << 3 | wire type).
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}
enum Wire { varint = 0, fixed64 = 1, length_delimited = 2, fixed32 = 5 };
void put_key(std::string& out, int field, Wire w) {
  put_varint(out, static_cast<uint64_t>(field) << 3 | w);
}
void put_bytes(std::string& out, int field, const std::string& bytes) {
  put_key(out, field, length_delimited);
  put_varint(out, bytes.size());
  out += bytes;
}
void put_double(std::string& out, int field, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  put_key(out, field, fixed64);
  put_le(out, bits, 8);
}
void put_float(std::string& out, int field, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  put_key(out, field, fixed32);
  put_le(out, bits, 4);
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

}  // namespace

std::string tfrecord(const std::string& data) {
  std::string len;
  put_le(len, data.size(), 8);
  std::string out = len;
  put_le(out, masked_crc(len.data(), len.size()), 4);
  out += data;
  put_le(out, masked_crc(data.data(), data.size()), 4);
  return out;
}

std::string scalar_event(double wall_time, int64_t step, const Scalars& scalars) {
  std::string summary;
  for (const auto& [tag, value] : scalars) {
    std::string v;
    put_bytes(v, 1, tag);
    put_float(v, 2, static_cast<float>(value));
    put_bytes(summary, 1, v);
  }
  std::string event;
  put_double(event, 1, wall_time);
  put_key(event, 2, varint);
  put_varint(event, static_cast<uint64_t>(step));
  if (!summary.empty()) put_bytes(event, 5, summary);
  return event;
}

std::string file_version_event(double wall_time) {
  std::string event;
  put_double(event, 1, wall_time);
  put_bytes(event, 3, "brain.Event:2");
  return event;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  const double now = trace_now_us() * 1e-6;
  const std::string base = (std::filesystem::path(dir) /
                            ("events.out.tfevents." + std::to_string(static_cast<int64_t>(now)) +
                             "." + host_name() + ".strata"))
                               .string();
  path_ = base;  // a second writer in the same second (a quick resume) gets a file of its own
  for (int n = 1; std::filesystem::exists(path_); ++n) path_ = base + "." + std::to_string(n);
  out_.open(path_, std::ios::binary | std::ios::trunc);
  if (!out_)
    throw StrataError("log.tensorboard_dir: cannot create '" + path_ +
                      "': " + std::strerror(errno));
  write(tfrecord(file_version_event(now)));
}

void TensorBoardWriter::add(int64_t step, const Scalars& scalars) {
  Scalars finite;  // TensorBoard draws NaN as a gap anyway; a skipped step has none
  for (const auto& s : scalars)
    if (std::isfinite(s.second)) finite.push_back(s);
  write(tfrecord(scalar_event(trace_now_us() * 1e-6, step, finite)));
}

void TensorBoardWriter::write(const std::string& record) {
  out_.write(record.data(), static_cast<std::streamsize>(record.size()));
  out_.flush();
  if (!out_) throw StrataError("log.tensorboard_dir: writing '" + path_ + "' failed");
}

}  // namespace strata
