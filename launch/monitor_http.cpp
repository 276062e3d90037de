#include "launch/monitor_http.h"

#include <boost/asio.hpp>
#include <chrono>
#include <cstdio>
#include <exception>

#include "core/error.h"

namespace strata {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

const char* http_reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    default:
      return "Error";
  }
}

namespace {

struct Shared {
  HttpHandler handler;
  HttpLimits limits;
  HttpStats stats;
  int open = 0;  // connections alive; the server thread alone touches it
};

// Splits "GET /path?q HTTP/1.1" into method and path; false when it is not such a line.
bool parse_request_line(const std::string& line, std::string& method, std::string& path) {
  const size_t a = line.find(' ');
  const size_t b = a == std::string::npos ? a : line.find(' ', a + 1);
  if (b == std::string::npos || !line.substr(b + 1).starts_with("HTTP/")) return false;
  method = line.substr(0, a);
  path = line.substr(a + 1, b - a - 1);
  if (path.empty() || path[0] != '/') return false;
  path = path.substr(0, path.find_first_of("?#"));
  return true;
}

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, Shared& shared)
      : socket_(std::move(socket)),
        deadline_(socket_.get_executor()),
        head_(shared.limits.max_header_bytes),
        shared_(shared) {
    ++shared_.open;
  }
  ~Connection() { --shared_.open; }

  void start() {
    auto self = shared_from_this();
    deadline_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(shared_.limits.request_timeout_s)));
    deadline_.async_wait([self](const error_code& ec) {
      if (ec) return;  // cancelled: the response went out
      ++self->shared_.stats.timed_out;
      error_code ignored;
      self->socket_.close(ignored);
    });
    asio::async_read_until(socket_, head_, "\r\n\r\n",
                           [self](const error_code& ec, size_t) { self->on_head(ec); });
  }

 private:
  void on_head(const error_code& ec) {
    if (ec == asio::error::not_found)
      return respond({431, "text/plain", "request head too large\n"});
    if (ec) {  // closed by the client or by the deadline: the timer must not keep us alive
      deadline_.cancel();
      return;
    }
    std::istream in(&head_);
    std::string line;
    std::getline(in, line);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::string method, path;
    if (!parse_request_line(line, method, path))
      return respond({400, "text/plain", "malformed request line\n"});
    if (method != "GET" && method != "HEAD")
      return respond({405, "text/plain", "only GET and HEAD\n"});
    head_only_ = method == "HEAD";
    HttpResponse r;
    try {
      r = shared_.handler(path);
    } catch (const std::exception& e) {
      r = {500, "text/plain", std::string(e.what()) + "\n"};
    }
    respond(std::move(r));
  }

  void respond(HttpResponse r) {
    out_ = "HTTP/1.1 " + std::to_string(r.status) + " " + http_reason(r.status) +
           "\r\nContent-Type: " + r.content_type +
           "\r\nContent-Length: " + std::to_string(r.body.size()) +
           "\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n";
    if (!head_only_) out_ += r.body;
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(out_), [self](const error_code& ec, size_t) {
      if (!ec) ++self->shared_.stats.responses;
      error_code ignored;
      self->socket_.shutdown(tcp::socket::shutdown_both, ignored);
      self->socket_.close(ignored);
      self->deadline_.cancel();
    });
  }

  tcp::socket socket_;
  asio::steady_timer deadline_;
  asio::streambuf head_;
  Shared& shared_;
  std::string out_;
  bool head_only_ = false;
};

}  // namespace

struct MonitorServer::Impl {
  // In this order: pending handlers (and the connections they hold) die with io, and a
  // connection's destructor still counts itself out of `shared`.
  Shared shared;
  asio::io_context io;
  tcp::acceptor acceptor{io};

  void accept() {
    acceptor.async_accept([this](const error_code& ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        if (shared.open >= shared.limits.max_connections) {
          ++shared.stats.refused;
          error_code ignored;
          socket.close(ignored);
        } else {
          std::make_shared<Connection>(std::move(socket), shared)->start();
        }
      }
      accept();  // transient errors (EMFILE, aborted handshakes) never stop the server
    });
  }

  void serve() {
    for (;;) {
      try {
        io.run();
        return;  // stopped
      } catch (const std::exception& e) {
        std::fprintf(stderr, "strata: monitor: %s (still serving)\n", e.what());
      }
    }
  }
};

MonitorServer::MonitorServer(const std::string& address, int port, HttpHandler handler,
                             HttpLimits limits)
    : impl_(std::make_unique<Impl>()) {
  impl_->shared.handler = std::move(handler);
  impl_->shared.limits = limits;
  const std::string where = address + ":" + std::to_string(port);
  try {
    const tcp::endpoint ep(asio::ip::make_address(address), static_cast<unsigned short>(port));
    impl_->acceptor.open(ep.protocol());
    impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
    impl_->acceptor.bind(ep);
    impl_->acceptor.listen();
    port_ = impl_->acceptor.local_endpoint().port();
  } catch (const boost::system::system_error& e) {
    throw StrataError("monitor: cannot listen on " + where + ": " + e.code().message());
  }
  impl_->accept();
  thread_ = std::thread([impl = impl_.get()] { impl->serve(); });
}

MonitorServer::~MonitorServer() {
  impl_->io.stop();
  if (thread_.joinable()) thread_.join();
}

const HttpStats& MonitorServer::stats() const { return impl_->shared.stats; }

}  // namespace strata
