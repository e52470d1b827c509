// A small HTTP/1.1 client for the Consul agent on Boost.Beast: kept-alive connections, one
// request at a time each, a deadline per request. Everything here runs on the one io thread of
// the registry instance (no locks, no strands); callbacks run on it too.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "micro/error.hpp"

namespace micro::consul {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct ClientSettings {
  std::string host = "127.0.0.1";
  std::string port = "8500";
  std::string token;                        // sent as X-Consul-Token when set
  std::chrono::milliseconds timeout{5000};  // per request (blocking queries add their wait)
  std::string describe() const { return "consul agent at " + host + ":" + port; }
};

struct HttpResponse {
  unsigned status = 0;
  std::string body;
  std::optional<uint64_t> index;  // X-Consul-Index, when present and a number
};

// Transport failures come as 503 (unreachable, reset, garbage) or 408 (deadline), and 499 when
// the request was cancelled by close(); HTTP answers of any status come as a response.
using HttpCallback = std::function<void(const micro::Error&, HttpResponse)>;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::io_context& io, std::shared_ptr<const ClientSettings> settings);

  // Sends one request; `done` runs once. A request that fails on a kept-alive connection
  // before any answer arrived (the agent closed it meanwhile) is retried once on a new one.
  void request(http::verb verb, std::string target, std::string body,
               std::chrono::milliseconds timeout, HttpCallback done);
  // Cancels the request in progress (its callback gets 499) and closes the socket.
  void close();
  bool busy() const { return static_cast<bool>(done_); }
  bool reusable() const { return connected_ && !closed_ && !busy(); }

 private:
  void start();
  void on_resolved(beast::error_code ec, asio::ip::tcp::resolver::results_type results);
  void on_connected(beast::error_code ec);
  void send();
  void on_written(beast::error_code ec);
  void on_read(beast::error_code ec);
  void fail(beast::error_code ec, const char* during);
  void finish(const micro::Error& error, HttpResponse response);

  std::shared_ptr<const ClientSettings> settings_;
  asio::ip::tcp::resolver resolver_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  std::optional<http::response_parser<http::string_body>> parser_;
  std::chrono::milliseconds timeout_{0};
  HttpCallback done_;
  bool connected_ = false;
  bool reused_ = false;  // this request went out on a connection used before
  bool retried_ = false;
  bool closed_ = false;
};

// The agent's address and a pool of idle connections for one-shot requests.
class Client {
 public:
  Client(asio::io_context& io, ClientSettings settings);
  const ClientSettings& settings() const { return *settings_; }
  asio::io_context& io() { return io_; }

  // One request on an idle pooled connection, or a new one.
  void call(http::verb verb, std::string target, std::string body, HttpCallback done);
  // A connection of its own, for a blocking query loop.
  std::shared_ptr<Connection> dedicated();
  // Closes every connection (pending requests get 499); later calls fail with 499.
  void close_all();

 private:
  asio::io_context& io_;
  std::shared_ptr<const ClientSettings> settings_;
  std::vector<std::shared_ptr<Connection>> idle_;
  std::vector<std::weak_ptr<Connection>> all_;
  bool closed_ = false;  // after close_all: calls fail with 499
};

// The error for an HTTP answer that is not 2xx: Consul's status (5xx as 503), its text, and
// what was asked of whom.
micro::Error status_error(const ClientSettings& settings, http::verb verb,
                          const std::string& target, const HttpResponse& response);

}  // namespace micro::consul
