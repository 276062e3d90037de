#pragma once
// The run monitor's HTTP server: Boost.Asio on a thread of its own, so training never waits for
// a client and a client never waits for training (documents are rendered from a snapshot).
// It answers GET (and HEAD) with whatever the handler returns for the path, closes every
// connection after one response, and defends itself against clients that misbehave:
//   - a request head larger than max_header_bytes gets 431 and is closed;
//   - a connection that has not sent a whole request head (slowloris) or not taken the response
//     within request_timeout_s is closed;
//   - beyond max_connections open at once, new connections are closed at once;
//   - a malformed request line gets 400, another method 405, an unknown path the handler's 404.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>  // Boost 1.74's asio uses std::exchange without it (C++20)

namespace strata {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};
// Runs on the server thread for every well-formed GET or HEAD; `path` excludes any query.
using HttpHandler = std::function<HttpResponse(const std::string& path)>;

struct HttpLimits {
  size_t max_header_bytes = 8192;
  double request_timeout_s = 5;
  int max_connections = 64;
};

struct HttpStats {
  std::atomic<int64_t> responses{0};  // responses written (any status)
  std::atomic<int64_t> refused{0};    // connections closed at the connection limit
  std::atomic<int64_t> timed_out{0};  // connections closed by their deadline
};

class MonitorServer {
 public:
  // Listens on address:port (port 0: a free port, see port()). StrataError naming the address
  // when it cannot (a port in use, an address not on this host).
  MonitorServer(const std::string& address, int port, HttpHandler handler, HttpLimits limits = {});
  ~MonitorServer();  // stops serving and joins the thread
  MonitorServer(const MonitorServer&) = delete;
  MonitorServer& operator=(const MonitorServer&) = delete;

  int port() const { return port_; }
  const HttpStats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
  std::thread thread_;
};

// "Not Found" for 404, ...
const char* http_reason(int status);

}  // namespace strata
