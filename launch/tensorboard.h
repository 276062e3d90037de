#pragma once
// TensorBoard event files (log.tensorboard_dir): rank 0 appends one Event per step with the
// step's scalars. The format is TensorFlow's, written by hand (no protobuf dependency):
//   file    events.out.tfevents.<unix seconds>.<host>.strata, a sequence of TFRecords
//   record  uint64 length | uint32 masked CRC-32C of the length bytes | data |
//           uint32 masked CRC-32C of the data        (little-endian; mask in tensorboard.cpp)
//   data    an Event proto: wall_time = 1 (double), step = 2 (int64), file_version = 3
//           (string, the first record: "brain.Event:2"), summary = 5 (Summary: repeated value = 1,
//           Summary.Value: tag = 1 string, simple_value = 2 float)
// Each record is flushed when written, so TensorBoard (or a crash) sees every finished step.
#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace strata {

using Scalars = std::vector<std::pair<std::string, double>>;  // tag, value

// One TFRecord around `data`.
std::string tfrecord(const std::string& data);
// An Event proto with a Summary of simple values (an empty `scalars` writes no summary).
std::string scalar_event(double wall_time, int64_t step, const Scalars& scalars);
// The first Event of a file: wall_time and file_version "brain.Event:2".
std::string file_version_event(double wall_time);

class TensorBoardWriter {
 public:
  // Creates the directory if needed and a new event file in it; StrataError when it cannot.
  explicit TensorBoardWriter(const std::string& dir);
  void add(int64_t step, const Scalars& scalars);
  const std::string& path() const { return path_; }

 private:
  void write(const std::string& record);

  std::string path_;
  std::ofstream out_;
};

}  // namespace strata
