#include "parallel/comm_stats.h"

#include <sstream>

#include "core/memory.h"

namespace strata {

const char* comm_op_name(CommOp op) {
  switch (op) {
    case CommOp::all_reduce:
      return "all_reduce";
    case CommOp::reduce_scatter:
      return "reduce_scatter";
    case CommOp::all_gather:
      return "all_gather";
    case CommOp::broadcast:
      return "broadcast";
    case CommOp::send:
      return "send";
    case CommOp::recv:
      return "recv";
    case CommOp::barrier:
      return "barrier";
    case CommOp::count:
      break;
  }
  return "?";
}

int64_t CommStats::total_calls() const {
  int64_t t = 0;
  for (const auto& s : ops) t += s.calls;
  return t;
}

int64_t CommStats::total_bytes() const {
  int64_t t = 0;
  for (const auto& s : ops) t += s.bytes;
  return t;
}

std::string format_comm_stats(const CommStats& s) {
  std::ostringstream os;
  os << s.axis << ":";
  bool any = false;
  for (int i = 0; i < kNumCommOps; ++i) {
    const CommOpStats& o = s.ops[i];
    if (o.calls == 0) continue;
    os << (any ? ", " : " ") << comm_op_name(static_cast<CommOp>(i)) << " " << o.calls
       << (o.calls == 1 ? " call " : " calls ") << format_bytes(o.bytes);
    any = true;
  }
  if (!any) os << " none";
  return os.str();
}

}  // namespace strata
