#include "gateway.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <limits>
#include <vector>

#include "wire.hpp"

namespace micro::registry_etcd {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr uint64_t kMaxUnaryBody = 64u << 20;

// One POST: connect (trying the endpoints in turn), send, then read the whole answer (unary) or
// read it piecewise, one JSON object at a time (streaming).
class Call final : public Gateway::Stream, public std::enable_shared_from_this<Call> {
 public:
  Call(Gateway& gateway, std::string path, std::string body)
      : gateway_(gateway), resolver_(gateway.io()), stream_(gateway.io()) {
    request_.method(http::verb::post);
    request_.target(path);
    request_.version(11);
    request_.set(http::field::host, "etcd");
    request_.set(http::field::content_type, "application/json");
    const std::string token = gateway.token();
    if (!token.empty()) request_.set(http::field::authorization, token);
    request_.body() = std::move(body);
    request_.prepare_payload();
    parser_.body_limit(kMaxUnaryBody);
  }

  void start_unary(Gateway::Answer done) {
    done_ = std::move(done);
    begin();
  }

  void start_stream(std::function<void(std::string)> on_object,
                    std::function<void(const Error&)> on_end) {
    streaming_ = true;
    on_object_ = std::move(on_object);
    on_end_ = std::move(on_end);
    begin();
  }

  void close() override {
    if (closed_) return;
    closed_ = true;  // the callbacks stay (close() may run inside one) but are called no more
    resolver_.cancel();
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

 private:
  void begin() {
    first_ = gateway_.preferred();
    asio::post(gateway_.io(), [self = shared_from_this()] { self->connect_next(); });
  }

  const Endpoint& endpoint() const {
    const auto& all = gateway_.endpoints();
    return all[(first_ + attempt_ - 1) % all.size()];
  }

  std::string what() const {
    return "POST " + std::string(request_.target()) + " to etcd at " + endpoint().url;
  }

  void connect_next() {
    if (closed_) return;
    if (attempt_ == gateway_.endpoints().size())
      return fail(Error::unavailable("etcd is unreachable (" + failures_ +
                                     "); is etcd running there? (registry-etcd option address)"));
    ++attempt_;
    // A numeric address needs no resolver (whose asynchronous form takes a thread hop).
    beast::error_code not_numeric;
    const auto address = asio::ip::make_address(endpoint().host, not_numeric);
    if (!not_numeric)
      return connect(
          {tcp::endpoint(address, static_cast<unsigned short>(std::stoul(endpoint().port)))});
    resolver_.async_resolve(
        endpoint().host, endpoint().port,
        [self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type results) {
          if (self->closed_) return;
          if (ec) return self->connect_failed(ec);
          self->connect(std::vector<tcp::endpoint>(results.begin(), results.end()));
        });
  }

  void connect(const std::vector<tcp::endpoint>& candidates) {
    stream_.expires_after(gateway_.timeout());
    stream_.async_connect(candidates,
                          [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
                            if (self->closed_) return;
                            if (ec) return self->connect_failed(ec);
                            self->gateway_.prefer((self->first_ + self->attempt_ - 1) %
                                                  self->gateway_.endpoints().size());
                            self->send();
                          });
  }

  void connect_failed(beast::error_code ec) {
    if (!failures_.empty()) failures_ += "; ";
    failures_ +=
        endpoint().url + ": " + (ec == beast::error::timeout ? "connect timed out" : ec.message());
    stream_.close();
    connect_next();
  }

  void send() {
    stream_.expires_after(gateway_.timeout());
    http::async_write(stream_, request_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (self->closed_) return;
      if (ec) return self->fail(self->io_error(ec, "sending"));
      self->read_header();
    });
  }

  void read_header() {
    http::async_read_header(
        stream_, buffer_, parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
          if (self->closed_) return;
          if (ec) return self->fail(self->io_error(ec, "waiting for the answer"));
          if (!self->streaming_ || self->parser_.get().result_int() != 200)
            return self->read_rest();
          self->stream_.expires_never();  // a watch is quiet for as long as nothing changes
          self->parser_.body_limit(std::numeric_limits<uint64_t>::max());
          self->read_some();
        });
  }

  void read_rest() {
    http::async_read(stream_, buffer_, parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (self->closed_) return;
                       if (ec) return self->fail(self->io_error(ec, "reading the answer"));
                       const unsigned status = self->parser_.get().result_int();
                       std::string body = std::move(self->parser_.get().body());
                       self->close_socket();
                       if (self->streaming_) {
                         // A stream refused with an HTTP error: report it as its end.
                         WatchResponse unused;
                         Error e = parse_answer(status, body, &unused, self->what());
                         if (e.ok()) e = Error::unavailable(self->what() + ": ended at once");
                         return self->end(e);
                       }
                       auto done = std::move(self->done_);
                       done(Error{}, status, std::move(body));
                     });
  }

  void read_some() {
    http::async_read_some(
        stream_, buffer_, parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
          if (self->closed_) return;
          auto& body = self->parser_.get().body();
          self->splitter_.feed(body);
          body.clear();  // string_body appends, so what was taken is not seen again
          std::string object;
          while (self->splitter_.next(object)) {
            self->on_object_(std::move(object));
            if (self->closed_) return;  // closed from the callback
          }
          if (!self->splitter_.error().ok()) return self->end(self->splitter_.error());
          if (ec) return self->end(self->io_error(ec, "reading the stream"));
          if (self->parser_.is_done())
            return self->end(Error::unavailable(self->what() + ": etcd ended the stream"));
          self->read_some();
        });
  }

  Error io_error(beast::error_code ec, const char* doing) const {
    if (ec == beast::error::timeout)
      return Error::timeout(what() + ": no answer within " +
                            std::to_string(gateway_.timeout().count()) + " ms (" + doing +
                            "; registry-etcd option timeout_ms)");
    return Error::unavailable(what() + ": " + ec.message() + " while " + doing);
  }

  void close_socket() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  void fail(const Error& error) {
    close_socket();
    if (streaming_) return end(error);
    auto done = std::move(done_);
    done(error, 0, {});
  }

  void end(const Error& error) {
    if (closed_) return;
    auto on_end = std::move(on_end_);
    close();
    if (on_end) on_end(error);
  }

  Gateway& gateway_;
  tcp::resolver resolver_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  http::response_parser<http::string_body> parser_;
  bool streaming_ = false;
  bool closed_ = false;
  size_t first_ = 0;
  size_t attempt_ = 0;
  std::string failures_;
  Gateway::Answer done_;
  std::function<void(std::string)> on_object_;
  std::function<void(const Error&)> on_end_;
  StreamSplitter splitter_;
};

}  // namespace

Result<Endpoint> parse_endpoint(const std::string& text) {
  Result<Endpoint> out;
  std::string_view rest = text;
  if (rest.rfind("https://", 0) == 0) {
    out.error = Error::bad_request("registry-etcd: address '" + text +
                                   "': https is not supported yet; use http://");
    return out;
  }
  if (rest.rfind("http://", 0) == 0) rest.remove_prefix(7);
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  const size_t colon = rest.rfind(':');
  std::string_view host = colon == std::string_view::npos ? rest : rest.substr(0, colon);
  std::string_view port = colon == std::string_view::npos ? "2379" : rest.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  const bool numeric_port = !port.empty() && port.size() <= 5 &&
                            port.find_first_not_of("0123456789") == std::string_view::npos &&
                            std::stoul(std::string(port)) <= 65535;
  if (host.empty() || !numeric_port || host.find('/') != std::string_view::npos) {
    out.error = Error::bad_request("registry-etcd: address '" + text +
                                   "' is not http://host:port (e.g. http://127.0.0.1:2379)");
    return out;
  }
  out.value = Endpoint{text, std::string(host), std::string(port)};
  return out;
}

Gateway::Gateway(asio::io_context& io, std::vector<Endpoint> endpoints,
                 std::chrono::milliseconds timeout)
    : io_(io), endpoints_(std::move(endpoints)), timeout_(timeout) {}

void Gateway::post(std::string path, std::string body, Answer done) {
  std::make_shared<Call>(*this, std::move(path), std::move(body))->start_unary(std::move(done));
}

std::shared_ptr<Gateway::Stream> Gateway::open_stream(std::string path, std::string body,
                                                      std::function<void(std::string)> on_object,
                                                      std::function<void(const Error&)> on_end) {
  auto call = std::make_shared<Call>(*this, std::move(path), std::move(body));
  call->start_stream(std::move(on_object), std::move(on_end));
  return call;
}

void Gateway::set_token(std::string token) {
  std::lock_guard<std::mutex> lock(token_mutex_);
  token_ = std::move(token);
}

std::string Gateway::token() const {
  std::lock_guard<std::mutex> lock(token_mutex_);
  return token_;
}

std::string Gateway::endpoint_list() const {
  std::string out;
  for (const auto& e : endpoints_) out += (out.empty() ? "" : ", ") + e.url;
  return out;
}

}  // namespace micro::registry_etcd
