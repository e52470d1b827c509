// HTTP/1.1 to etcd's v3 JSON gateway over Boost.Beast: unary POSTs with a deadline, and streaming
// POSTs (watch) whose answer is read as it arrives. Everything runs on the module's io thread.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "micro/error.hpp"

namespace micro::registry_etcd {

struct Endpoint {
  std::string url;  // as configured, for messages
  std::string host;
  std::string port;
};

// Reads "http://host:port", "host:port" or "[v6]:port"; https is refused (no TLS yet).
Result<Endpoint> parse_endpoint(const std::string& text);

class Gateway {
 public:
  // `done(error, http_status, body)`: error is set when no HTTP answer came (unreachable,
  // timeout); otherwise the status and body are the server's. Called once, on the io thread.
  using Answer = std::function<void(const Error&, unsigned, std::string)>;

  Gateway(boost::asio::io_context& io, std::vector<Endpoint> endpoints,
          std::chrono::milliseconds timeout);

  // POSTs `body` to `path` ("/v3/kv/range"), trying the endpoints in turn while they refuse the
  // connection; the answer must arrive within the timeout. Any thread.
  void post(std::string path, std::string body, Answer done);

  // A streaming POST. `on_object` gets each JSON object of a 200 answer as it arrives; `on_end`
  // runs once when the stream ends for any reason but close(). Both on the io thread.
  class Stream {
   public:
    virtual ~Stream() = default;
    // Ends the stream without calling on_end. Io thread only.
    virtual void close() = 0;
  };
  std::shared_ptr<Stream> open_stream(std::string path, std::string body,
                                      std::function<void(std::string)> on_object,
                                      std::function<void(const Error&)> on_end);

  // The auth token sent with every request (etcd auth); empty: none. Any thread.
  void set_token(std::string token);
  std::string token() const;

  std::string endpoint_list() const;
  std::chrono::milliseconds timeout() const noexcept { return timeout_; }
  boost::asio::io_context& io() noexcept { return io_; }

  // The endpoint to try first, and where the last answer came from.
  size_t preferred() const noexcept { return preferred_.load(); }
  void prefer(size_t index) noexcept { preferred_.store(index); }
  const std::vector<Endpoint>& endpoints() const noexcept { return endpoints_; }

 private:
  boost::asio::io_context& io_;
  const std::vector<Endpoint> endpoints_;
  const std::chrono::milliseconds timeout_;
  std::atomic<size_t> preferred_{0};
  mutable std::mutex token_mutex_;
  std::string token_;
};

}  // namespace micro::registry_etcd
