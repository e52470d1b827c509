// TLS with OpenSSL through Asio: the client and server contexts built from the options, a
// client connection's verification (CA chain, then the host name or IP address) and SNI, ALPN
// (h2, http/1.1), and handshake failures as errors that name their cause.
#pragma once

#include <boost/asio/ssl.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <memory>
#include <string>

#include "micro/error.hpp"
#include "micro/log.hpp"
#include "settings.hpp"

namespace micro::transport_http {

namespace beast = boost::beast;
namespace net = boost::asio;

// The executor of every connection: a strand on one io_context, as a concrete type. (Beast's
// tcp_stream type-erases it as any_io_executor, which allocated copies of the strand on every
// asynchronous operation: about a tenth of the allocations of a call.)
using Strand = net::strand<net::io_context::executor_type>;
using TcpStream = beast::basic_stream<net::ip::tcp, Strand>;
using TlsStream = beast::ssl_stream<TcpStream>;

template <class Stream>
inline constexpr bool kIsTls = std::is_same_v<Stream, TlsStream>;

// The protocol names ALPN negotiates, and the value of the micro-transport-protocol header.
inline constexpr const char* kH2 = "h2";
inline constexpr const char* kH2c = "h2c";  // plaintext HTTP/2 (not negotiated: prior knowledge)
inline constexpr const char* kHttp11 = "http/1.1";

// Throw micro::Exception (400) naming the file that cannot be used.
std::unique_ptr<net::ssl::context> make_server_context(const Settings& settings);
std::unique_ptr<net::ssl::context> make_client_context(const Settings& settings,
                                                       const Logger& log);

// Before a client handshake: SNI and the name to verify (`server_name`, else `host`), and the
// protocols offered through ALPN (h2 first when `offer_h2`).
Error prepare_client(TlsStream& stream, const TlsSettings& tls, const std::string& host,
                     bool offer_h2);

// What ALPN settled ("h2", "http/1.1"; "http/1.1" when the peer did not use ALPN).
std::string negotiated_protocol(TlsStream& stream);

// "TLS handshake with 127.0.0.1:8443 failed: certificate verify failed (certificate has
// expired)": the OpenSSL reason, and the certificate check's when that is what failed.
std::string handshake_failure(TlsStream& stream, const beast::error_code& ec,
                              const std::string& peer);

}  // namespace micro::transport_http
