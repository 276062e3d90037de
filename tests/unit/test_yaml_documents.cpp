// load_yaml_documents: what the job file parser reads instead of YAML::LoadAll, which never
// returns on some malformed text with Debian's yaml-cpp 0.7 (found by tests/fuzz).
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "launch/job_config.h"
#include "launch/yaml_documents.h"

namespace strata {
namespace {

TEST(YamlDocumentsTest, CountsDocumentsAndFindsTheSecond) {
  EXPECT_EQ(load_yaml_documents("").count, 0u);
  const YamlDocuments one = load_yaml_documents("a: 1\n");
  EXPECT_EQ(one.count, 1u);
  EXPECT_EQ(one.first["a"].as<int>(), 1);
  const YamlDocuments three = load_yaml_documents("a: 1\n---\nb: 2\n---\nc: 3\n");
  EXPECT_EQ(three.count, 3u);
  EXPECT_EQ(three.first["a"].as<int>(), 1);
  EXPECT_EQ(three.second_start.line, 2);  // "b: 2", 0-based
  EXPECT_EQ(three.second_start.column, 0);
}

// yaml-cpp#1040: LoadAll(",") allocates an empty document per turn until memory runs out.
TEST(YamlDocumentsTest, TextThatMakesTheParserStallIsASyntaxError) {
  for (const std::string text : {",", ",\x0e", ",\n", "  ,\n"})
    EXPECT_THROW(load_yaml_documents(text), YAML::ParserException) << text;
}

TEST(YamlDocumentsTest, JobFileOfACommaIsRefusedNamingTheFile) {
  try {
    parse_job_config(",\x0e", "job.yaml");
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("job.yaml:1:"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("YAML syntax error"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace strata
