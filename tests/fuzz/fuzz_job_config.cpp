// The job-file parser on arbitrary bytes: input up to the first NUL is the YAML text, each
// NUL-separated piece after it one --set override. A config that parses must dump to YAML that
// parses back to the same config (job_config.h promises it).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "launch/job_config.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strata;
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string yaml = input.substr(0, nul);
  std::vector<std::string> overrides;
  for (size_t at = nul; at != std::string::npos && at < input.size();) {
    const size_t next = input.find('\0', at + 1);
    overrides.push_back(input.substr(at + 1, next == std::string::npos ? next : next - at - 1));
    at = next;
  }
  fuzz::parse_or_input_error([&] {
    const JobConfig cfg = parse_job_config(yaml, "fuzz.yaml", overrides);
    const std::string dumped = dump_job_config(cfg);
    JobConfig again;
    try {
      again = parse_job_config(dumped, "fuzz.yaml");  // the dump names its source
    } catch (const InputError& e) {
      fuzz::finding("dump_job_config wrote YAML that does not parse back:", e.what());
    }
    fuzz::require(dump_job_config(again) == dumped, "dump -> parse -> dump changed the config");
  });
  return 0;
}
