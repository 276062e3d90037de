#pragma once
// Sharded checkpoints. Every rank writes its own slices of the (flat) tensors; rank 0 commits
// the checkpoint by writing the manifest last. Collective-agnostic: the trainer runs the
// barriers between the phases, this file only does the file logic:
//
//   every rank:  write_shard(root, step, rank, slices)
//   barrier
//   rank 0:      commit_checkpoint(root, step, world, state, config_yaml, keep_last)
//   barrier      (optional: only needed if ranks must see the new `latest`)
//
// Layout under the checkpoint root:
//   root/step_00000010/shard_r00000.bin         this rank's slices, each at a 64-byte aligned
//                                               offset (so a reader could mmap them directly)
//   root/step_00000010/shard_r00000.index.yaml  written after the .bin is durable: per entry
//                                               name, dtype, global_shape, global_offset,
//                                               numel, byte offset, crc32c; whole-file crc, size
//   root/step_00000010/manifest.yaml            written LAST by rank 0: step, world, every shard
//                                               with its entries, scalar state, the job config
//   root/latest                                 names the newest committed step directory
//
// Every file is written to a temp name, fsynced and renamed (then its directory fsynced), so
// nothing half-written ever carries a final name: a step directory without manifest.yaml is an
// aborted save and is ignored (and later pruned). A checkpoint written by N ranks can be read
// under any M: CheckpointReader::read assembles any element range from whichever shards hold it.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace strata {

// One contiguous piece of a tensor held by this rank: elements
// [global_offset, global_offset + numel) of the row-major flattened tensor of global_shape.
struct TensorSlice {
  std::string name;
  std::vector<int64_t> global_shape;
  int64_t global_offset = 0;
  int64_t numel = 0;
  const float* data = nullptr;
};

// "step_00000010" (at least 8 digits).
std::string step_dir_name(int64_t step);
// "shard_r00003.bin" / "shard_r00003.index.yaml".
std::string shard_file_name(int rank);
std::string shard_index_name(int rank);

// Every rank: writes root/step_XXXXXXXX/shard_rNNNNN.bin and then its index. Creates the
// directories as needed. If that step is already committed (a run restarted from scratch into
// the same directory), its manifest is removed first: the step is replaced, and until the new
// commit find_latest falls back to the newest other committed step.
void write_shard(const std::string& root, int64_t step, int rank,
                 const std::vector<TensorSlice>& slices);

// Rank 0 only, after every rank's write_shard returned. Reads and validates all `world` index
// files (a missing or inconsistent one is an error naming it), writes the manifest, atomically
// points `latest` at the new step, then removes committed step directories older than the
// `keep_last` newest (0 = keep all) and incomplete ones (no manifest) older than this step.
// `state` holds scalar training state (data-loader position, RNG state, optimizer step, ...) as
// text; `config_yaml` is the resolved job config.
void commit_checkpoint(const std::string& root, int64_t step, int world,
                       const std::map<std::string, std::string>& state,
                       const std::string& config_yaml, int64_t keep_last);

// commit_checkpoint's checks of one index file, on its text: InputError naming `source` unless
// it is a well-formed index written for `step` by `rank` (tests/fuzz feeds it arbitrary bytes).
void check_shard_index(const std::string& yaml_text, const std::string& source, int64_t step,
                       int rank);

// Before the first step (and before anything is written): the checkpoint root is usable. Creates
// it when missing; an InputError naming checkpoint.dir when it is a file or anything but a
// directory (a symbolic link to a directory is fine), not writable, or holds a step directory,
// `latest` or step-directory entry that is a symbolic link, a FIFO or another non-regular file.
void check_checkpoint_root_writable(const std::string& root);

// True when root/step_XXXXXXXX/manifest.yaml exists.
bool is_committed(const std::string& root, int64_t step);

// The committed step directory named by root/latest. If `latest` is missing or names a
// directory without a manifest, the newest committed step directory; nullopt when none.
std::optional<std::string> find_latest(const std::string& root);

// Reads a committed checkpoint. Shard files are verified lazily: the first read touching a
// shard checks its size, whole-file crc32c and every entry's crc32c (one sequential pass), and
// remembers the result. Every problem with the files is an InputError naming the file.
class CheckpointReader {
 public:
  // A step directory (holding manifest.yaml), or a checkpoint root (-> find_latest).
  explicit CheckpointReader(const std::string& step_dir_or_root);
  // A reader over manifest text already in memory, its shards in step_dir (read only when a
  // tensor is read). The same parsing and checks as opening step_dir/manifest.yaml.
  static CheckpointReader from_manifest_text(const std::string& yaml_text,
                                             const std::string& step_dir);
  ~CheckpointReader();
  CheckpointReader(CheckpointReader&&) noexcept;
  CheckpointReader& operator=(CheckpointReader&&) noexcept;

  const std::string& dir() const;
  int64_t step() const;
  int world() const;  // ranks that wrote it
  const std::string& config_yaml() const;
  const std::map<std::string, std::string>& states() const;
  bool has_state(const std::string& key) const;
  std::string state(const std::string& key) const;  // InputError naming the manifest if missing

  bool has(const std::string& name) const;
  std::vector<std::string> tensor_names() const;  // sorted
  std::vector<int64_t> global_shape(const std::string& name) const;
  int64_t numel(const std::string& name) const;

  // Elements [global_offset, global_offset + numel) of tensor `name` into dst. InputError when
  // the tensor is unknown or the range is not fully covered by the shards.
  void read(const std::string& name, int64_t global_offset, int64_t numel, float* dst) const;
  // The whole tensor.
  std::vector<float> read(const std::string& name) const;

 private:
  struct Impl;
  explicit CheckpointReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata
