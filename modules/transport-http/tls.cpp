#include "tls.hpp"

#include <openssl/ssl.h>

#include "micro/tls_common.hpp"

namespace micro::transport_http {

namespace {

namespace ssl = net::ssl;

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

}  // namespace

std::unique_ptr<ssl::context> make_server_context(const Settings& settings) {
  auto ctx = micro::tls::make_server_context(settings.tls, "transport-http");
  SSL_CTX_set_alpn_select_cb(ctx->native_handle(), select_protocol,
                             settings.http2 ? ctx.get() : nullptr);
  return ctx;
}

std::unique_ptr<ssl::context> make_client_context(const Settings& settings, const Logger& log) {
  return micro::tls::make_client_context(settings.tls, log, "transport-http");
}

Error prepare_client(TlsStream& stream, const TlsSettings& tls, const std::string& host,
                     bool offer_h2) {
  SSL* ssl = stream.native_handle();
  if (Error e = micro::tls::prepare_client(ssl, tls, host); !e.ok()) return e;
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
  return micro::tls::handshake_failure(stream.native_handle(), ec, peer);
}

}  // namespace micro::transport_http
