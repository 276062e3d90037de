#pragma once
// One YAML value <-> one typed job-file field (launch/job_config.cpp's schema uses these). Each
// reader returns "" on success or what was wrong ("expected an integer, got 'abc'"), so the
// caller can put the location and key in front; each writer gives YAML text that reads back to
// the same value.
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <vector>

namespace strata::yaml_values {

// A value quoted in a message: long ones are cut, so a 10 MB value is not a 10 MB message.
std::string shown_value(const std::string& v);
// "an empty value", "a map", "a sequence" or the quoted scalar.
std::string describe(const YAML::Node& n);

std::string read(const YAML::Node& n, int64_t& out);
std::string read(const YAML::Node& n, uint64_t& out);
std::string read(const YAML::Node& n, float& out);
std::string read(const YAML::Node& n, bool& out);
std::string read(const YAML::Node& n, std::string& out);
// A sequence of integers ([2, 1, 1], or a block sequence); an empty value is the empty list.
std::string read(const YAML::Node& n, std::vector<int64_t>& out);

std::string format_value(int64_t v);
std::string format_value(uint64_t v);
std::string format_value(bool v);
std::string format_value(float v);  // %.9g: every float32 reads back bit-identically
std::string format_value(const std::string& s);
std::string format_value(const std::vector<int64_t>& v);  // flow form: [2, 1, 1], []

}  // namespace strata::yaml_values
