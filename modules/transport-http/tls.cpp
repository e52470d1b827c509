#include "tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/address.hpp>
#include <cstring>

#include "micro/callback.hpp"

namespace micro::transport_http {

namespace {

namespace ssl = net::ssl;

[[noreturn]] void refuse(const std::string& what, const beast::error_code& ec) {
  throw Exception(Error::bad_request("transport-http: " + what + ": " + ec.message()));
}

// ALPN wire format: length-prefixed names.
const unsigned char kOfferH2[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
const unsigned char kOfferHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

// The server picks h2 when both sides allow it, else http/1.1; a client without ALPN gets
// HTTP/1.1 as well.
int select_protocol(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                    unsigned int inlen, void* arg) {
  const bool allow_h2 = arg != nullptr;
  unsigned char* selected = nullptr;
  if (allow_h2 &&
      SSL_select_next_proto(&selected, outlen, kOfferH2, sizeof kOfferH2, in, inlen) ==
          OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  if (SSL_select_next_proto(&selected, outlen, kOfferHttp11, sizeof kOfferHttp11, in, inlen) ==
      OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;  // go on without ALPN: HTTP/1.1
}

bool is_ip_literal(const std::string& host) {
  beast::error_code ec;
  net::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

std::unique_ptr<ssl::context> make_server_context(const Settings& settings) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  beast::error_code ec;
  ctx->use_certificate_chain_file(settings.tls.cert, ec);
  if (ec) refuse("cannot use tls_cert '" + settings.tls.cert + "'", ec);
  ctx->use_private_key_file(settings.tls.key, ssl::context::pem, ec);
  if (ec) refuse("cannot use tls_key '" + settings.tls.key + "'", ec);
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
    throw Exception(Error::bad_request("transport-http: tls_key '" + settings.tls.key +
                                       "' does not match tls_cert '" + settings.tls.cert + "'"));
  SSL_CTX_set_alpn_select_cb(ctx->native_handle(), select_protocol,
                             settings.http2 ? ctx.get() : nullptr);
  return ctx;
}

std::unique_ptr<ssl::context> make_client_context(const Settings& settings, const Logger& log) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  beast::error_code ec;
  if (settings.tls.insecure_skip_verify) {
    log.warn(
        "transport-http: tls_insecure_skip_verify = true: server certificates and names are NOT "
        "checked; anyone can impersonate a server. Use it in tests only.");
    ctx->set_verify_mode(ssl::verify_none);
    return ctx;
  }
  if (settings.tls.ca.empty()) {
    ctx->set_default_verify_paths(ec);
    if (ec) refuse("cannot load the system's CA certificates", ec);
  } else {
    ctx->load_verify_file(settings.tls.ca, ec);
    if (ec) refuse("cannot use tls_ca '" + settings.tls.ca + "'", ec);
  }
  ctx->set_verify_mode(ssl::verify_peer);
  return ctx;
}

Error prepare_client(TlsStream& stream, const TlsSettings& tls, const std::string& host,
                     bool offer_h2) {
  SSL* ssl = stream.native_handle();
  const std::string& name = tls.server_name.empty() ? host : tls.server_name;
  const bool ip = is_ip_literal(name);
  if (!ip && SSL_set_tlsext_host_name(ssl, name.c_str()) != 1)
    return Error::bad_request("TLS: cannot send '" + name + "' as SNI");
  if (!tls.insecure_skip_verify) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    const int set = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                       : X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
    if (set != 1) return Error::bad_request("TLS: cannot verify against the name '" + name + "'");
  }
  if (offer_h2)
    SSL_set_alpn_protos(ssl, kOfferH2, sizeof kOfferH2);
  else
    SSL_set_alpn_protos(ssl, kOfferHttp11, sizeof kOfferHttp11);
  return {};
}

std::string negotiated_protocol(TlsStream& stream) {
  const unsigned char* name = nullptr;
  unsigned int length = 0;
  SSL_get0_alpn_selected(stream.native_handle(), &name, &length);
  if (name == nullptr || length == 0) return kHttp11;
  return std::string(reinterpret_cast<const char*>(name), length);
}

std::string handshake_failure(TlsStream& stream, const beast::error_code& ec,
                              const std::string& peer) {
  std::string reason = ec.message();
  if (ec.category() == net::error::get_ssl_category()) {
    // Asio's text for an OpenSSL error ends with the library name: "... (SSL routines)".
    if (const char* text = ERR_reason_error_string(static_cast<unsigned long>(ec.value())))
      reason = text;
  }
  const long verify = SSL_get_verify_result(stream.native_handle());
  if (verify != X509_V_OK) reason += std::string(" (") + X509_verify_cert_error_string(verify) + ")";
  if (ec == net::error::eof || ec == net::ssl::error::stream_truncated)
    reason = "the peer closed the connection (is it a TLS server? does it accept this client?)";
  return "TLS handshake with " + peer + " failed: " + reason;
}

}  // namespace micro::transport_http
