#pragma once
// One assertion for the file readers' tests: fn throws an InputError whose message contains
// `needle` (the file name, field or rule it must name).
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "core/error.h"

namespace strata::test {

inline void expect_input_error(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected InputError mentioning " << needle;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace strata::test
