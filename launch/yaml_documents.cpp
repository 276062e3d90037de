#include "launch/yaml_documents.h"

#include <yaml-cpp/eventhandler.h>

#include <sstream>

namespace strata {
namespace {

// Counts documents and notes where each one's first node is; builds nothing.
class DocumentCounter : public YAML::EventHandler {
 public:
  size_t count = 0;
  YAML::Mark second_start;

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (count > 0 && mark.pos == last_start_.pos)
      throw YAML::ParserException(mark, "cannot read the text as YAML");
    last_start_ = mark;
    awaiting_node_ = true;
    ++count;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    node(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    node(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    node(mark);
  }
  void OnMapEnd() override {}

 private:
  void node(const YAML::Mark& mark) {
    if (awaiting_node_ && count == 2) second_start = mark;
    awaiting_node_ = false;
  }
  YAML::Mark last_start_;
  bool awaiting_node_ = false;
};

}  // namespace

YamlDocuments load_yaml_documents(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentCounter counter;
  while (parser.HandleNextDocument(counter)) {
  }
  YamlDocuments docs;
  docs.count = counter.count;
  docs.second_start = counter.second_start;
  if (docs.count > 0) docs.first = YAML::Load(text);
  return docs;
}

}  // namespace strata
