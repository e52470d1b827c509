// HTTP/2 (over TLS, when ALPN settles h2), with libnghttp2 doing all framing, HPACK and flow
// control. The wire contract is HTTP/1.1's (docs/rpc-wire.md, "HTTP/2"): one HTTP/2 stream per
// exchange or per bidi stream; DATA carries the body or the stream frames; END_STREAM ends a
// direction; RST_STREAM cancels. A server hands each HTTP/2 stream to on_accept as a socket; a
// client keeps one HTTP/2 connection per address and multiplexes every dialed socket onto it.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "connection.hpp"
#include "micro/transport.hpp"
#include "runtime.hpp"
#include "tls.hpp"

namespace micro::transport_http {

// The socket for a dial, on the address's live HTTP/2 connection; null when there is none.
std::unique_ptr<SocketImpl> h2_dial_pooled(Runtime& runtime, const std::string& address,
                                           const DialOptions& options);

// A fresh client connection on which ALPN settled h2: it becomes the address's HTTP/2
// connection, and the dialed socket (stream or unary) is its first user. On the connection's
// strand.
std::unique_ptr<SocketImpl> h2_adopt_client(Runtime& runtime, const std::string& address,
                                            std::unique_ptr<Connection<TlsStream>> conn,
                                            bool stream, Millis read_timeout);

// Serves an accepted connection on which ALPN settled h2: each request stream goes to `deliver`
// as a server socket (any thread).
using DeliverSocket = std::function<void(std::unique_ptr<SocketImpl>)>;
void h2_serve(Runtime& runtime, std::unique_ptr<Connection<TlsStream>> conn, DeliverSocket deliver);

// The client's HTTP/2 connections, one per address. Thread-safe.
class H2ClientPool {
 public:
  class Impl;
  H2ClientPool();
  ~H2ClientPool();
  Impl& impl() { return *impl_; }
  // Closes every connection (the transport is going away).
  void close();

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace micro::transport_http
