// A checkpoint manifest on arbitrary bytes: what CheckpointReader parses and indexes when it
// opens a step directory, then the queries a resume makes. The step directory does not exist,
// so a read gets as far as covering the element range with shards and then fails to open one.
#include <cstddef>
#include <cstdint>
#include <string>

#include "launch/checkpoint.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strata;
  const std::string text(reinterpret_cast<const char*>(data), size);
  fuzz::parse_or_input_error([&] {
    const CheckpointReader r = CheckpointReader::from_manifest_text(text, "/nonexistent/step");
    fuzz::require(r.world() >= 1, "a manifest of no shards was accepted");
    for (const std::string& name : r.tensor_names()) {
      const int64_t n = r.numel(name);
      fuzz::require(n >= 0, "negative element count accepted");
      float x = 0.f;
      if (n > 0) r.read(name, n - 1, 1, &x);
    }
    for (const auto& [key, value] : r.states())
      fuzz::require(r.state(key) == value, "state lookup");
  });
  return 0;
}
