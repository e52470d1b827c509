// HTTP/2 (over TLS when ALPN settles h2, or plaintext with prior knowledge: h2c), with libnghttp2 doing all framing, HPACK and flow
// control. The wire contract is HTTP/1.1's (docs/rpc-wire.md, "HTTP/2"): one HTTP/2 stream per
// exchange or per bidi stream; DATA carries the body or the stream frames; END_STREAM ends a
// direction; RST_STREAM cancels. A server hands each HTTP/2 stream to on_accept as a socket; a
// client keeps http2_connections HTTP/2 connections per address and multiplexes every dialed
// socket onto the one with the fewest.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "connection.hpp"
#include "micro/transport.hpp"
#include "runtime.hpp"
#include "tls.hpp"

namespace micro::transport_http {

// The connection an HTTP/2 session runs on: TLS on which ALPN settled h2, or plaintext TCP (h2c).
// Bytes already read from it (a sniffed preface) wait in its buffer and are taken first.
using H2Wire = std::variant<std::unique_ptr<Connection<TlsStream>>,
                            std::unique_ptr<Connection<TcpStream>>>;

// The socket for a dial, on the address's live HTTP/2 connection with the fewest sockets; null
// when there is none.
std::unique_ptr<SocketImpl> h2_dial_pooled(Runtime& runtime, const std::string& address,
                                           const DialOptions& options);

// A fresh client connection on which ALPN settled h2 (or a plaintext one, with h2c): it becomes the address's HTTP/2
// connection, and the dialed socket (stream or unary) is its first user. On the connection's
// strand.
std::unique_ptr<SocketImpl> h2_adopt_client(Runtime& runtime, const std::string& address,
                                            H2Wire conn, bool stream, Millis read_timeout);

// Serves an accepted connection on which ALPN settled h2 (or whose first bytes were the HTTP/2
// preface, with h2c): each request stream goes to `deliver` as a server socket (any thread).
using DeliverSocket = std::function<void(std::unique_ptr<SocketImpl>)>;
void h2_serve(Runtime& runtime, H2Wire conn, DeliverSocket deliver);

// The client connection preface (RFC 9113 3.4), by which a listener with h2c tells an HTTP/2
// connection from an HTTP/1.1 one.
inline constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// For the fuzzer (tests/fuzz/fuzz_h2_request.cpp): a server HTTP/2 connection, on a stream that
// is never connected, is fed `bytes` as if read after the TLS handshake; every request stream it
// yields is read to its end; then everything is closed. Runs `runtime`'s io_context (which no
// thread may be running) until nothing is left to do.
void h2_feed_server(Runtime& runtime, std::string_view bytes);

// The client's HTTP/2 connections: up to http2_connections per address, each dial going to the
// one with the fewest sockets. Thread-safe.
class H2ClientPool {
 public:
  class Impl;
  // Keeps at most `per_address` live connections to an address: one dialed past that (by dials
  // that each dialed for themselves after the first attempts failed) serves its own socket only.
  explicit H2ClientPool(int per_address);
  ~H2ClientPool();
  Impl& impl() { return *impl_; }

  // Dials made while the first connections to an address (http2_connections of them) are being
  // set up wait for them (so a burst of calls shares them). A waiting dial is kept here and true
  // is returned; when a usable connection is already there, `waiter` runs at once and true is
  // returned; false means none is under way, and the caller now starts the `attempts` that
  // others wait for.
  using Waiter = std::function<void()>;
  bool wait_for_connection(const std::string& address, Waiter waiter, int attempts);
  // One of those attempts ended (HTTP/2 or not, ok or not): when it was the last, the waiters, to
  // run.
  std::vector<Waiter> connection_settled(const std::string& address);
  // Forgets every connection (the transport is going away; it closes them); dials that were
  // waiting then fail with 499.
  void close();
  bool closed() const;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace micro::transport_http
