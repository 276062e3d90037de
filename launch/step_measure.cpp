#include "launch/step_measure.h"

#include <algorithm>
#include <sstream>

namespace strata {

std::map<std::string, int64_t> StepMeasure::bytes_by_axis(const std::vector<const Comm*>& comms) {
  std::map<std::string, int64_t> by_axis;
  for (const Comm* c : comms)
    if (c) by_axis[c->axis()] += c->stats().total_bytes();
  return by_axis;
}

void StepMeasure::begin(const std::vector<const Comm*>& comms) { at_begin_ = bytes_by_axis(comms); }

void StepMeasure::end(const std::vector<const Comm*>& comms) {
  const MemorySnapshot m = MemoryTracker::instance().snapshot();
  for (int c = 0; c < kNumMemCategories; ++c) peak_[c] = std::max(peak_[c], m.peak[c]);
  total_peak_ = std::max(total_peak_, m.total_peak);
  last_step_.clear();
  for (const auto& [axis, bytes] : bytes_by_axis(comms)) last_step_[axis] = bytes - at_begin_[axis];
  ++steps_;
}

std::string StepMeasure::json(int rank, int pp_rank) const {
  std::ostringstream os;
  os << "{\"rank\":" << rank << ",\"pp_rank\":" << pp_rank << ",\"steps\":" << steps_
     << ",\"peak_bytes\":{";
  for (int c = 0; c < kNumMemCategories; ++c)
    os << "\"" << mem_category_name(static_cast<MemCategory>(c)) << "\":" << peak_[c] << ",";
  os << "\"total\":" << total_peak_ << "},\"comm_bytes_per_step\":{";
  bool first = true;
  for (const auto& [axis, bytes] : last_step_) {
    os << (first ? "" : ",") << "\"" << axis << "\":" << bytes;
    first = false;
  }
  os << "}}\n";
  return os.str();
}

}  // namespace strata
