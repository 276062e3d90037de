#pragma once
// The run monitor's dashboard (GET /): one self-contained HTML page, no outside assets. It is
// rendered with the status JSON of the moment embedded, so it shows the run at once (and in a
// headless browser's --dump-dom), then refreshes itself from /status every two seconds: loss
// and throughput curves (SVG), memory per category, and a table of the ranks with their state.
#include <string>

namespace strata {

std::string dashboard_html(const std::string& status_json);

}  // namespace strata
