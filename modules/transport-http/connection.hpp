// One TCP connection with what outlives a single socket on it (its read buffer, how many
// exchanges it has carried), so a finished client socket can hand it to the pool. Templated on
// the stream so TLS (ssl_stream<tcp_stream>) can slot in: everything below goes through
// beast::get_lowest_layer, and the stream's executor is the connection's strand.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "watchdog.hpp"

namespace micro::transport_http {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// host:port, with IPv6 hosts in brackets.
inline std::string to_string(const tcp::endpoint& endpoint) {
  const std::string host = endpoint.address().to_string();
  const std::string port = std::to_string(endpoint.port());
  return endpoint.address().is_v6() ? "[" + host + "]:" + port : host + ":" + port;
}

template <class Stream>
struct Connection {
  explicit Connection(Stream s)
      : stream(std::move(s)),
        watchdog(std::make_shared<Watchdog>(stream.get_executor(), [this] { close(); })) {}
  ~Connection() { watchdog->detach(); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  auto& tcp_layer() noexcept { return beast::get_lowest_layer(stream); }
  auto& socket() noexcept { return beast::get_lowest_layer(stream).socket(); }

  // The addresses of a connected socket ("" when unknown).
  std::string local_address() {
    beast::error_code ec;
    const auto endpoint = socket().local_endpoint(ec);
    return ec ? std::string() : to_string(endpoint);
  }
  std::string remote_address() {
    beast::error_code ec;
    const auto endpoint = socket().remote_endpoint(ec);
    return ec ? std::string() : to_string(endpoint);
  }

  // Tells the peer nothing more follows; reading goes on.
  void shutdown_send() noexcept {
    beast::error_code ec;
    socket().shutdown(tcp::socket::shutdown_send, ec);
  }
  // Closes now; pending operations complete with operation_aborted.
  void close() noexcept {
    beast::error_code ec;
    socket().shutdown(tcp::socket::shutdown_both, ec);
    tcp_layer().close();
  }

  // For an idle connection (no operation pending): true when nothing is waiting to be read and
  // the peer has not closed, found by peeking without blocking.
  bool still_open() noexcept {
    if (!socket().is_open() || buffer.size() != 0) return false;
    beast::error_code ec;
    char byte = 0;
    const bool was_non_blocking = socket().non_blocking();  // write_wire leaves it on
    if (!was_non_blocking) socket().non_blocking(true, ec);
    if (ec) return false;
    const size_t n = socket().receive(net::buffer(&byte, 1), tcp::socket::message_peek, ec);
    beast::error_code ignored;
    if (!was_non_blocking) socket().non_blocking(false, ignored);
    return n == 0 && ec == net::error::would_block;
  }

  // Times a read or write by the watchdog instead of Beast's per-operation timer (for the
  // operations of the unary path; see watchdog.hpp).
  template <class Duration>
  void watch(Watchdog::Kind kind, Duration timeout) {
    tcp_layer().expires_never();  // no stale expiry makes Beast time it too
    watchdog->start(kind, timeout);
  }
  // A watched operation ended with `ec`: the watchdog stops timing it, and an abort it caused is
  // reported as the timeout it was.
  beast::error_code settle(Watchdog::Kind kind, beast::error_code ec) noexcept {
    watchdog->finish(kind);
    if (ec && watchdog->timed_out()) return beast::error::timeout;
    return ec;
  }

  Stream stream;
  std::shared_ptr<Watchdog> watchdog;
  beast::flat_buffer buffer;  // bytes read past the last message
  uint64_t exchanges = 0;     // request/response exchanges completed on this connection
};

}  // namespace micro::transport_http
