// A shard index (shard_r00000.index.yaml) on arbitrary bytes, checked as commit_checkpoint
// checks the index of rank 0 at step 1 (the step and rank of the seed corpus).
#include <cstddef>
#include <cstdint>
#include <string>

#include "launch/checkpoint.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  strata::fuzz::parse_or_input_error(
      [&] { strata::check_shard_index(text, "shard_r00000.index.yaml", 1, 0); });
  return 0;
}
