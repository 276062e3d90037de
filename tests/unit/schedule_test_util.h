#pragma once
// What the schedule and pipeline-plan tests share: every schedule kind with the virtual stages
// it takes, and a CSV file of this process's own for parallel.schedule_file, removed afterwards.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "parallel/schedule_gen.h"

namespace strata::test {

inline constexpr ScheduleKind kAllKinds[] = {ScheduleKind::gpipe, ScheduleKind::one_f_one_b,
                                             ScheduleKind::interleaved, ScheduleKind::zb_h1};

inline int virtual_stages_for(ScheduleKind kind) {
  return kind == ScheduleKind::interleaved ? 2 : 1;
}

class ScheduleFileTest : public ::testing::Test {
 protected:
  std::string path_ = (std::filesystem::temp_directory_path() /
                       ("strata_plan_" + std::to_string(::getpid()) + ".csv"))
                          .string();
  void TearDown() override { std::filesystem::remove(path_); }
  void write(const std::string& text) { std::ofstream(path_, std::ios::binary) << text; }
};

}  // namespace strata::test
