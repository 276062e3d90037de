#pragma once
// Every saved activation goes through the ActivationStore, keyed by (micro-batch, block), so
// keeping, recomputing and swapping are policies here, not rewrites of the model.
//
// Under `swap`, each tensor of a set is handed to the tier as it is (zero-copy on nvme: the
// page-aligned buffer is written from directly and freed when the write completes). A buffer
// that several sets share (a tensor saved by several layers) is written once and read back once.
// A buffer someone else still holds (the caller, a kept set) goes to the tier as a copy, and is
// shared back rather than read if it is still in memory when its set is taken.
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "offload/saved_tensors.h"
#include "offload/tier.h"

namespace strata {

enum class ActivationPolicy { keep, recompute, swap };
ActivationPolicy parse_activation_policy(const std::string& s);  // InputError on unknown
const char* activation_policy_name(ActivationPolicy p);

// What one block's forward and backward cost, as last measured (for the `auto` planner).
struct BlockMeasure {
  int64_t saved_bytes = 0;  // the full set the forward saved
  int64_t input_bytes = 0;  // the block input (what recompute keeps)
  double forward_s = 0;     // forward compute
  double backward_s = 0;    // backward compute (recompute excluded)
};

class ActivationStore {
 public:
  // `input_name` is the saved tensor that recompute starts from (the block input). `tier` is
  // where `swap` blocks go; without one, the first swap save makes a host tier.
  ActivationStore(int64_t n_blocks, ActivationPolicy policy, std::string input_name = "x",
                  std::unique_ptr<SwapTier> tier = nullptr);
  // Destroying the store destroys the tier: in-flight I/O is drained and the swap file removed,
  // also when the store goes away while an exception unwinds.
  ~ActivationStore();

  void set_policy(int64_t block, ActivationPolicy p);
  // Swapped sets whose writes may be in flight at once (offload.writes_in_flight, >= 1): each
  // save first waits for the oldest sets' writes until at most sets - 1 remain, so the memory
  // writes hold is bounded, and with 1 set it is the same every run whatever the device's speed.
  void set_writes_in_flight(int64_t sets);
  ActivationPolicy policy(int64_t block) const { return policies_.at(static_cast<size_t>(block)); }
  const std::string& input_name() const { return input_name_; }
  int64_t n_blocks() const { return static_cast<int64_t>(policies_.size()); }

  // After a block's forward: the store takes the set; under `recompute` it keeps only the input;
  // under `swap` every tensor (the input too) goes to the tier and its memory is freed once the
  // write completes. Every save (of any policy) first bounds the writes in flight.
  void save(int64_t micro_batch, int64_t block, SavedTensors&& saved);

  // Starts bringing a swapped set back ahead of its take() (a no-op for other policies and for
  // sets not held), so the reads overlap the backward of the block before it.
  // `only` (optional): just these tensors, e.g. those the block's backward needs first.
  void prefetch(int64_t micro_batch, int64_t block, const std::vector<std::string>* only = nullptr);

  // Before the block's backward: hands the full set back (and forgets it). Under `recompute`
  // it first calls rebuild(input, out) to run the block's forward again into `out`; under
  // `swap` it reads the tensors back, same names, sizes and order, bit for bit.
  using Rebuild = std::function<void(const float* input, SavedTensors& out)>;
  SavedTensors take(int64_t micro_batch, int64_t block, const Rebuild& rebuild);

  // Timings reported by the model for the `auto` planner (the last value per block is kept).
  void record_forward(int64_t block, double seconds, int64_t saved_bytes, int64_t input_bytes);
  void record_backward(int64_t block, double seconds);
  const std::vector<BlockMeasure>& measures() const { return measures_; }

  int64_t bytes_held() const;  // activation memory held (swapped tensors do not count)
  int64_t bytes_swapped() const { return tier_ ? tier_->bytes_used() : 0; }
  int64_t bytes_written() const { return bytes_written_; }  // payload handed to the tier, total
  // Seconds the caller spent blocked in the tier: handing writes over (save) and waiting for
  // reads that were not ready (take). What the overlap did not hide.
  double write_seconds() const { return write_s_; }
  double read_wait_seconds() const { return read_wait_s_; }
  int64_t recomputed_blocks() const { return recomputed_; }
  int64_t swapped_blocks() const { return swapped_; }
  bool empty() const { return held_.empty(); }
  SwapTier* tier() { return tier_.get(); }

 private:
  // One buffer on the tier, however many sets refer to it.
  struct SwapEntry {
    SwapTier::Handle handle = -1;
    int64_t refs = 0;                   // held sets still to take it
    SharedBuffer back;                  // once read back: shared with every later take
    std::weak_ptr<FloatBuffer> origin;  // the buffer that was written (identity for sharing)
  };
  struct Swapped {
    std::string name;
    std::shared_ptr<SwapEntry> entry;
  };
  struct Held {
    SavedTensors mem;                // keep / recompute, and swap tensors that stayed in memory
    std::vector<Swapped> out;        // swap: tensors on the tier
    std::vector<std::string> order;  // every name in the order it was saved
  };

  SwapTier& swap_tier();
  void put_on_tier(Held& held, const std::string& name, SharedBuffer buf);
  void release(const std::shared_ptr<SwapEntry>& e);
  void prefetch_entries(const Held& held, const std::vector<std::string>* only = nullptr);
  void release_quietly(const std::vector<Swapped>& out, size_t from);
  void bound_writes();

  std::vector<ActivationPolicy> policies_;
  std::string input_name_;
  std::unique_ptr<SwapTier> tier_;
  std::map<std::pair<int64_t, int64_t>, Held> held_;
  // Buffers on the tier by identity, so a buffer shared into several sets is written once.
  std::map<std::weak_ptr<FloatBuffer>, std::shared_ptr<SwapEntry>, std::owner_less<>> written_;
  std::vector<BlockMeasure> measures_;
  int64_t writes_in_flight_ = 1;
  std::deque<std::vector<SwapTier::Handle>> writing_sets_;  // oldest first: each set's writes
  int64_t recomputed_ = 0;
  int64_t swapped_ = 0;
  int64_t bytes_written_ = 0;
  double write_s_ = 0;
  double read_wait_s_ = 0;
};

}  // namespace strata
