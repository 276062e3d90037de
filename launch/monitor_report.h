#pragma once
// What a rank tells the run monitor about itself (a heartbeat): what it is doing since when, its
// last step's figures, its memory per category, its swap tier and its bytes per mesh axis. Rank
// 0 keeps its own in place and receives the others' as text over the heartbeat channel
// (launch/monitor_channel.h): "key value" lines, so a field added later is ignored by nothing
// but its reader, and a malformed message is dropped, never trusted.
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "core/memory.h"

namespace strata {

// What a rank is doing, coarsely (the dashboard colours it); `activity` says it in words.
enum class RankState { starting, training, waiting, evaluating, checkpointing, finished };
const char* rank_state_name(RankState s);
std::optional<RankState> parse_rank_state(const std::string& s);

struct RankReport {
  int rank = 0;
  int64_t step = 0;  // optimizer steps completed
  RankState state = RankState::starting;
  std::string activity;     // "forward block 2", "waiting in all_reduce dp #12", ...
  double since = 0;         // Unix seconds when `activity` began
  double sent = 0;          // Unix seconds when the report was made
  double step_seconds = 0;  // the last step's
  double tokens_per_s = 0;  // the last step's, global
  double gemm_flops_per_s = 0;
  std::array<int64_t, kNumMemCategories> mem_current{};
  std::array<int64_t, kNumMemCategories> mem_peak{};  // peaks of the last step
  std::string swap_tier;  // "host", "nvme", "cxl"; "" without a swap tier
  int64_t swap_used = 0;  // bytes the tier holds now
  int64_t swap_capacity = 0;
  int64_t swap_written = 0;                   // bytes handed to the tier since the start
  double swap_bytes_per_s = 0;                // written in the last step / its time
  std::map<std::string, int64_t> comm_bytes;  // axis -> bytes since the start (comm_stats.h)
};

std::string encode_report(const RankReport& r);
// nullopt for a message that is not a whole report (missing rank or state, bad numbers).
std::optional<RankReport> decode_report(const std::string& text);

}  // namespace strata
