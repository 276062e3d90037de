#pragma once
// The documents of a YAML text, for parsers that accept exactly one (the job file). Instead of
// YAML::LoadAll, which never returns on some malformed text in Debian's yaml-cpp 0.7: on a stream
// starting with ',' (jbeder/yaml-cpp#1040, fixed upstream after 0.8 by #1319) its parser keeps
// reporting another empty document without consuming input, and LoadAll allocates one per turn
// until memory runs out. Found by tests/fuzz/fuzz_job_config.
#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <string>

namespace strata {

struct YamlDocuments {
  size_t count = 0;
  YAML::Node first;         // the first document (null when count == 0)
  YAML::Mark second_start;  // where the second document's content starts (count >= 2)
};

// Throws YAML::ParserException (like YAML::Load) on a syntax error, and on a document that
// starts where the previous one did (the parser made no progress: the text is not YAML).
YamlDocuments load_yaml_documents(const std::string& text);

}  // namespace strata
