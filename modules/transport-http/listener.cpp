#include "listener.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include "address.hpp"
#include "completions.hpp"
#include "connection.hpp"
#include "h2.hpp"
#include "server_session.hpp"
#include "socket.hpp"
#include "wire.hpp"

namespace micro::transport_http {

// The accept loop, on its own strand; shared with its handlers so it outlives the listener.
class HttpListener::Acceptor : public std::enable_shared_from_this<Acceptor> {
 public:
  Acceptor(Runtime& runtime, SocketImplCallback on_accept)
      : runtime_(runtime),
        on_accept_(std::move(on_accept)),
        strand_(net::make_strand(runtime.ioc)),
        acceptor_(strand_),
        backoff_(strand_) {}

  // Synchronous: called before the acceptor is shared with any handler.
  std::string bind(const std::string& address) {
    HostPort where;
    if (!split_host_port(address, where))
      throw Exception(
          Error::bad_request("listen: '" + address + "' is not host:port").with_id(kModule));
    beast::error_code ec;
    tcp::resolver resolver(runtime_.ioc);
    const auto found =
        resolver.resolve(where.host.empty() ? "0.0.0.0" : where.host, where.port,
                         tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    if (ec || found.empty())
      throw Exception(Error(
          503,
          "cannot listen on " + address + ": cannot resolve '" + where.host + "': " + ec.message(),
          kModule));
    const tcp::endpoint endpoint = found.begin()->endpoint();
    const auto check = [&](const char* step) {
      if (ec)
        throw Exception(
            Error(503, "cannot listen on " + address + ": " + step + ": " + ec.message(), kModule));
    };
    acceptor_.open(endpoint.protocol(), ec);
    check("open");
    acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    check("SO_REUSEADDR");
    acceptor_.bind(endpoint, ec);
    check("bind");
    acceptor_.listen(net::socket_base::max_listen_connections, ec);
    check("listen");
    const auto bound = acceptor_.local_endpoint(ec);
    check("local address");
    return to_string(bound);
  }

  void start() {
    net::post(strand_, [self = shared_from_this()] { self->accept(); });
  }

  // Any thread: no on_accept after it returns; the acceptor closes on its strand.
  void stop() {
    gate_.shut();
    net::post(strand_, [self = shared_from_this()] {
      beast::error_code ignored;
      self->acceptor_.close(ignored);
      self->backoff_.cancel();
    });
  }

 private:
  void accept() {
    if (!acceptor_.is_open()) return;
    acceptor_.async_accept(net::make_strand(runtime_.next_context()),
                           [self = shared_from_this()](beast::error_code ec, TcpStream::socket_type socket) {
                             self->on_accepted(ec, std::move(socket));
                           });
  }

  void on_accepted(beast::error_code ec, TcpStream::socket_type socket) {
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {  // out of descriptors, or the like: say so and try again shortly
      runtime_.log.warn("accept failed: ", ec.message(), "; retrying in 100 ms");
      backoff_.expires_after(std::chrono::milliseconds(100));
      backoff_.async_wait([self = shared_from_this()](beast::error_code wait_ec) {
        if (!wait_ec) self->accept();
      });
      return;
    }
    if (runtime_.tls_server) {
      start_tls(std::move(socket));
      return accept();
    }
    if (runtime_.settings.h2c) {
      start_sniffing(std::move(socket));
      return accept();
    }
    auto accepted = std::make_unique<HttpSocket>(
        make_server_session(runtime_, TcpStream(std::move(socket))));
    runtime_.log.trace("accepted ", accepted->remote_address());
    gate_.run([&] { on_accept_({}, std::move(accepted)); });
    accept();  // the next, once this one is handed over: one on_accept at a time
  }

  // Any thread: hands a server socket to on_accept on the acceptor's strand, one at a time.
  void deliver(std::unique_ptr<SocketImpl> accepted) {
    net::post(strand_, [self = shared_from_this(), accepted = std::move(accepted)]() mutable {
      self->runtime_.log.trace("accepted ", accepted->remote_address());
      self->gate_.run([&] { self->on_accept_({}, std::move(accepted)); });
    });
  }

  // For an HTTP/2 connection: hands each of its request streams to on_accept while the listener
  // lives.
  DeliverSocket stream_deliverer() {
    return [weak = std::weak_ptr<Acceptor>(shared_from_this())](
               std::unique_ptr<SocketImpl> accepted) {
      if (auto acceptor = weak.lock()) acceptor->deliver(std::move(accepted));
    };
  }

  // TLS: the handshake runs on the connection's own strand (a slow client holds up no other),
  // within header_timeout. Plaintext HTTP gets a plaintext 400 that says so; a failed handshake
  // is logged and closed. Then ALPN decides: an HTTP/2 connection hands each of its streams to
  // on_accept as a socket, an HTTP/1.1 one is a socket.
  void start_tls(TcpStream::socket_type socket) {
    beast::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    const auto endpoint = socket.remote_endpoint(ec);
    const std::string peer = ec ? std::string("an unknown peer") : to_string(endpoint);
    auto conn = std::make_shared<Connection<TlsStream>>(
        TlsStream(TcpStream(std::move(socket)), *runtime_.tls_server));
    conn->tcp_layer().expires_after(runtime_.settings.header_timeout);
    conn->tcp_layer().async_read_some(
        conn->buffer.prepare(4096),
        [self = shared_from_this(), conn, peer](beast::error_code ec, size_t n) {
          if (ec) return;  // closed or timed out before saying anything
          conn->buffer.commit(n);
          const auto first = static_cast<const unsigned char*>(conn->buffer.data().data())[0];
          if (first != 0x16) return self->refuse_plaintext(conn, peer);  // not a TLS handshake
          conn->stream.async_handshake(
              net::ssl::stream_base::server, conn->buffer.data(),
              [self, conn, peer](beast::error_code ec, size_t used) {
                conn->buffer.consume(used);
                if (ec) {
                  self->runtime_.log.warn(handshake_failure(conn->stream, ec, peer));
                  return conn->close();
                }
                if (negotiated_protocol(conn->stream) == kH2)
                  return h2_serve(self->runtime_,
                                  std::make_unique<Connection<TlsStream>>(std::move(conn->stream)),
                                  self->stream_deliverer());
                self->deliver(std::make_unique<HttpSocket>(
                    make_server_session(self->runtime_, std::move(conn->stream))));
              });
        });
  }

  // h2c: a connection's first bytes say which protocol it speaks. The HTTP/2 preface makes it an
  // HTTP/2 connection; anything else is HTTP/1.1 (no HTTP/1.1 request starts with "PRI * "). The
  // bytes read go to whichever serves it. Silence past header_timeout closes it.
  void start_sniffing(TcpStream::socket_type socket) {
    beast::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    auto conn = std::make_shared<Connection<TcpStream>>(TcpStream(std::move(socket)));
    conn->tcp_layer().expires_after(runtime_.settings.header_timeout);
    sniff(conn);
  }

  void sniff(const std::shared_ptr<Connection<TcpStream>>& conn) {
    conn->tcp_layer().async_read_some(
        conn->buffer.prepare(4096),
        [self = shared_from_this(), conn](beast::error_code ec, size_t n) {
          if (ec) return;  // closed or timed out before saying enough
          conn->buffer.commit(n);
          const std::string_view got(static_cast<const char*>(conn->buffer.data().data()),
                                     conn->buffer.size());
          const size_t compared = std::min(got.size(), kH2Preface.size());
          const bool h2 = got.substr(0, compared) == kH2Preface.substr(0, compared);
          if (h2 && compared < kH2Preface.size()) return self->sniff(conn);  // so far, so HTTP/2
          if (h2) {
            auto wire = std::make_unique<Connection<TcpStream>>(std::move(conn->stream));
            wire->buffer.commit(net::buffer_copy(wire->buffer.prepare(got.size()), net::buffer(got)));
            return h2_serve(self->runtime_, std::move(wire), self->stream_deliverer());
          }
          conn->tcp_layer().expires_never();
          self->deliver(std::make_unique<HttpSocket>(
              make_server_session(self->runtime_, std::move(conn->stream), got)));
        });
  }

  void refuse_plaintext(const std::shared_ptr<Connection<TlsStream>>& conn,
                        const std::string& peer) {
    const Error error(400,
                      "plaintext HTTP sent to the TLS port " + conn->local_address() +
                          ": dial it with TLS (transport option tls = true)",
                      kModule);
    runtime_.log.warn("refused plaintext HTTP from ", peer, " on a TLS port");
    auto reply = std::make_shared<http::response<http::string_body>>(error_response(error, 11));
    conn->tcp_layer().expires_after(runtime_.settings.write_timeout);
    http::async_write(conn->tcp_layer(), *reply,
                      [conn, reply, linger = runtime_.settings.linger](beast::error_code ec, size_t) {
                        if (ec) return conn->close();
                        conn->shutdown_send();
                        drain(conn, linger);
                      });
  }

  // Reads and drops what the client still sends, so the reply is not lost to a reset; then closes.
  static void drain(const std::shared_ptr<Connection<TlsStream>>& conn, Millis linger) {
    conn->buffer.consume(conn->buffer.size());
    conn->tcp_layer().expires_after(linger);
    conn->tcp_layer().async_read_some(conn->buffer.prepare(16 * 1024),
                                      [conn, linger](beast::error_code ec, size_t) {
                                        if (ec) return conn->close();
                                        drain(conn, linger);
                                      });
  }

  Runtime& runtime_;
  SocketImplCallback on_accept_;
  CallbackGate gate_;
  net::strand<net::io_context::executor_type> strand_;
  tcp::acceptor acceptor_;
  net::steady_timer backoff_;
};

HttpListener::HttpListener(Runtime& runtime, const std::string& address,
                           SocketImplCallback on_accept)
    : acceptor_(std::make_shared<Acceptor>(runtime, std::move(on_accept))) {
  address_ = acceptor_->bind(address);
  acceptor_->start();
  runtime.log.debug("listening on ", address_);
}

HttpListener::~HttpListener() { acceptor_->stop(); }

}  // namespace micro::transport_http
