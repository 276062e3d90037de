// parallel.vocab_parallel (launch/job_config.h): its default, the file and --set forms, the dump
// and its round trip, and a wrong value named with its line.
#include <gtest/gtest.h>

#include <string>

#include "input_error_util.h"
#include "launch/job_config.h"

namespace strata {
namespace {

const std::string kJob = "data:\n  train: x\n";

TEST(JobConfigVocab, OffByDefault) {
  EXPECT_FALSE(parse_job_config(kJob, "job.yaml").parallel.vocab_parallel);
  EXPECT_FALSE(JobConfig{}.parallel.vocab_parallel);
}

TEST(JobConfigVocab, SetInTheFileOrOnTheCommandLine) {
  EXPECT_TRUE(parse_job_config(kJob + "parallel:\n  vocab_parallel: true\n", "job.yaml")
                  .parallel.vocab_parallel);
  EXPECT_TRUE(
      parse_job_config(kJob, "job.yaml", {"parallel.vocab_parallel=true"}).parallel.vocab_parallel);
  EXPECT_FALSE(parse_job_config(kJob + "parallel:\n  vocab_parallel: true\n", "job.yaml",
                                {"parallel.vocab_parallel=false"})
                   .parallel.vocab_parallel);
}

TEST(JobConfigVocab, DumpedAfterPpLayersAndRoundTrips) {
  JobConfig c = parse_job_config(kJob, "job.yaml", {"parallel.vocab_parallel=true"});
  const std::string text = dump_job_config(c);
  EXPECT_NE(text.find("  pp_layers: []\n  vocab_parallel: true\n"), std::string::npos) << text;
  EXPECT_TRUE(parse_job_config(text, "dump.yaml").parallel.vocab_parallel);
  c.parallel.vocab_parallel = false;
  EXPECT_NE(dump_job_config(c).find("  vocab_parallel: false\n"), std::string::npos);
}

TEST(JobConfigVocab, AWrongValueNamesTheKeyAndLine) {
  test::expect_input_error(
      [] { parse_job_config(kJob + "parallel:\n  vocab_parallel: sometimes\n", "job.yaml"); },
      "job.yaml:4:3: parallel.vocab_parallel: expected");
  test::expect_input_error(
      [] { parse_job_config(kJob + "parallel:\n  vocab_paralel: true\n", "job.yaml"); },
      "did you mean 'vocab_parallel'?");
}

}  // namespace
}  // namespace strata
