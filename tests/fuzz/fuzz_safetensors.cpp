// A safetensors file on arbitrary bytes, parsed as load_safetensors parses a mapped file. An
// accepted file's tensors must hold exactly the elements their shapes declare.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "models/safetensors.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strata;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  fuzz::parse_or_input_error([&] {
    const SafetensorsFile f = parse_safetensors(bytes, "fuzz.safetensors");
    for (const LoadedTensor& t : f.tensors) {
      int64_t numel = 1;
      for (int64_t d : t.shape) numel *= d;  // no overflow: the parser bounded numel * element size
      fuzz::require(static_cast<int64_t>(t.data.size()) == numel, "data does not match shape");
      fuzz::require(f.find(t.name) != nullptr, "a loaded tensor is not found by name");
    }
  });
  return 0;
}
