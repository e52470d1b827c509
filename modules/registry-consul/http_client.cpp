#include "http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>

namespace micro::consul {

namespace {

constexpr uint64_t kBodyLimit = 64 * 1024 * 1024;
constexpr size_t kIdleMax = 32;  // idle kept-alive connections of the pool

std::optional<uint64_t> parse_index(beast::string_view text) {
  if (text.empty() || text.size() > 20) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t next = value * 10 + uint64_t(c - '0');
    if (next / 10 != value) return std::nullopt;
    value = next;
  }
  return value;
}

}  // namespace

Connection::Connection(asio::io_context& io, std::shared_ptr<const ClientSettings> settings)
    : settings_(std::move(settings)), resolver_(io), stream_(io) {}

void Connection::request(http::verb verb, std::string target, std::string body,
                         std::chrono::milliseconds timeout, HttpCallback done) {
  if (busy()) {
    done(micro::Error::internal("registry-consul: connection already has a request in flight"), {});
    return;
  }
  done_ = std::move(done);
  closed_ = false;
  retried_ = false;
  timeout_ = timeout;
  request_ = {};
  request_.method(verb);
  request_.target(target);
  request_.version(11);
  request_.set(http::field::host, settings_->host + ":" + settings_->port);
  request_.set(http::field::user_agent, "micro-cpp registry-consul");
  request_.keep_alive(true);
  if (!settings_->token.empty()) request_.set("X-Consul-Token", settings_->token);
  if (verb == http::verb::put || !body.empty()) {
    request_.set(http::field::content_type, "application/json");
    request_.body() = std::move(body);
    request_.prepare_payload();
  }
  start();
}

void Connection::start() {
  reused_ = connected_;
  stream_.expires_after(timeout_);
  if (connected_) return send();
  resolver_.async_resolve(settings_->host, settings_->port,
                          [self = shared_from_this()](beast::error_code ec, auto results) {
                            self->on_resolved(ec, std::move(results));
                          });
}

void Connection::on_resolved(beast::error_code ec, asio::ip::tcp::resolver::results_type results) {
  if (!busy()) return;
  if (ec) return fail(ec, "resolving");
  stream_.async_connect(results, [self = shared_from_this()](beast::error_code e, const auto&) {
    self->on_connected(e);
  });
}

void Connection::on_connected(beast::error_code ec) {
  if (!busy()) return;
  if (ec) return fail(ec, "connecting to");
  connected_ = true;
  send();
}

void Connection::send() {
  http::async_write(stream_, request_, [self = shared_from_this()](beast::error_code ec, size_t) {
    self->on_written(ec);
  });
}

void Connection::on_written(beast::error_code ec) {
  if (!busy()) return;
  if (ec) return fail(ec, "writing to");
  parser_.emplace();
  parser_->body_limit(kBodyLimit);
  buffer_.clear();
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code e, size_t) { self->on_read(e); });
}

void Connection::on_read(beast::error_code ec) {
  if (!busy()) return;
  if (ec) return fail(ec, "reading from");
  auto& message = parser_->get();
  HttpResponse response;
  response.status = message.result_int();
  response.index = parse_index(message["X-Consul-Index"]);
  response.body = std::move(message.body());
  if (!message.keep_alive()) {
    beast::error_code ignored;
    stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    stream_.close();
    connected_ = false;
  }
  finish({}, std::move(response));
}

void Connection::fail(beast::error_code ec, const char* during) {
  const bool timed_out = ec == beast::error::timeout;
  const bool stale = reused_ && !retried_ && !timed_out && !closed_ &&
                     (ec == http::error::end_of_stream || ec == asio::error::connection_reset ||
                      ec == asio::error::eof || ec == asio::error::broken_pipe);
  beast::error_code ignored;
  stream_.socket().close(ignored);
  connected_ = false;
  if (stale) {  // the agent closed an idle kept-alive connection: once more, on a new one
    retried_ = true;
    reused_ = false;
    stream_.expires_after(timeout_);
    resolver_.async_resolve(settings_->host, settings_->port,
                            [self = shared_from_this()](beast::error_code e, auto results) {
                              self->on_resolved(e, std::move(results));
                            });
    return;
  }
  const std::string what =
      std::string(http::to_string(request_.method())) + " " + std::string(request_.target());
  if (timed_out) {
    finish(micro::Error::timeout(settings_->describe() + " did not answer " + what + " within " +
                                 std::to_string(timeout_.count()) + " ms"),
           {});
  } else {
    finish(micro::Error::unavailable(std::string("registry-consul: ") + during + " " +
                                     settings_->describe() + " failed (" + what +
                                     "): " + ec.message() +
                                     "; is the agent running? Set [registry] address or "
                                     "CONSUL_HTTP_ADDR"),
           {});
  }
}

void Connection::finish(const micro::Error& error, HttpResponse response) {
  auto done = std::move(done_);
  done_ = nullptr;
  if (done) done(error, std::move(response));
}

void Connection::close() {
  closed_ = true;
  beast::error_code ignored;
  resolver_.cancel();
  stream_.socket().close(ignored);
  connected_ = false;
  finish(micro::Error(499, "registry-consul: request to " + settings_->describe() + " cancelled"),
         {});
}

Client::Client(asio::io_context& io, ClientSettings settings)
    : io_(io), settings_(std::make_shared<const ClientSettings>(std::move(settings))) {}

std::shared_ptr<Connection> Client::dedicated() {
  auto connection = std::make_shared<Connection>(io_, settings_);
  all_.erase(std::remove_if(all_.begin(), all_.end(), [](const auto& w) { return w.expired(); }),
             all_.end());
  all_.push_back(connection);
  return connection;
}

void Client::call(http::verb verb, std::string target, std::string body, HttpCallback done) {
  if (closed_) {
    done(micro::Error(499, "registry-consul: closing; no new request to " + settings_->describe()),
         {});
    return;
  }
  std::shared_ptr<Connection> connection;
  while (!idle_.empty() && !connection) {
    connection = std::move(idle_.back());
    idle_.pop_back();
    if (!connection->reusable()) connection.reset();
  }
  if (!connection) connection = dedicated();
  connection->request(
      verb, std::move(target), std::move(body), settings_->timeout,
      [this, connection, done = std::move(done)](const micro::Error& error, HttpResponse response) {
        if (error.ok() && connection->reusable() && idle_.size() < kIdleMax)
          idle_.push_back(connection);
        done(error, std::move(response));
      });
}

void Client::close_all() {
  closed_ = true;
  idle_.clear();
  auto all = std::move(all_);
  for (auto& weak : all)
    if (auto connection = weak.lock()) connection->close();
}

micro::Error status_error(const ClientSettings& settings, http::verb verb,
                          const std::string& target, const HttpResponse& response) {
  std::string text = response.body.substr(0, 512);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  const std::string detail = settings.describe() + " answered " + std::to_string(response.status) +
                             " to " + std::string(http::to_string(verb)) + " " + target + ": " +
                             text;
  const int code = response.status >= 500 ? 503 : int(response.status);
  return micro::Error(code, detail);
}

}  // namespace micro::consul
