// TLS with OpenSSL through Asio, shared by the modules that speak HTTP (transport-http,
// broker-http): the tls_* options, the server and client contexts built from them, a client
// connection's verification (CA chain, then the host name or IP address) and SNI, and handshake
// failures as errors that name their cause. Header-only: each module compiles its own copy.
// ALPN and anything else protocol-specific stays in the module.
#pragma once

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/error.hpp>
#include <memory>
#include <string>
#include <vector>

#include "micro/error.hpp"
#include "micro/log.hpp"
#include "micro/plugin.hpp"

namespace micro::tls {

// A client with `client` dials TLS; a server with cert and key listens TLS only.
struct TlsSettings {
  std::string cert;          // PEM certificate chain (server)
  std::string key;           // PEM private key (server)
  std::string ca;            // PEM CAs the client trusts; empty: the system's
  std::string server_name;   // name the client verifies and sends as SNI; empty: the dialed host
  bool insecure_skip_verify = false;  // tests only: no certificate or name check
  bool client = false;       // tls = true (or any client-side tls_* option)
  bool server() const { return !cert.empty(); }
};

// The options, with the same names and meaning in every module that takes them.
inline std::vector<OptionSpec> option_specs() {
  return {
      {"tls", MICRO_OPTION_BOOL,
       "Dial TLS (implied by tls_ca, tls_server_name, tls_insecure_skip_verify)", "false"},
      {"tls_cert", MICRO_OPTION_STRING, "Server certificate chain (PEM file): listen TLS only", ""},
      {"tls_key", MICRO_OPTION_STRING, "Server private key (PEM file), with tls_cert", ""},
      {"tls_ca", MICRO_OPTION_STRING,
       "CA certificates (PEM file) a TLS client trusts (default: the system's)", ""},
      {"tls_server_name", MICRO_OPTION_STRING,
       "Name a TLS client verifies and sends as SNI (default: the dialed host)", ""},
      {"tls_insecure_skip_verify", MICRO_OPTION_BOOL,
       "TESTS ONLY: a TLS client accepts any certificate and name", "false"},
  };
}

// Throws micro::Exception (400) when cert and key do not come together.
inline TlsSettings read_settings(const Options& options, const std::string& module) {
  TlsSettings s;
  s.cert = options.get_string("tls_cert");
  s.key = options.get_string("tls_key");
  s.ca = options.get_string("tls_ca");
  s.server_name = options.get_string("tls_server_name");
  s.insecure_skip_verify = options.get_bool("tls_insecure_skip_verify", false);
  s.client = options.get_bool("tls", false) || !s.ca.empty() || !s.server_name.empty() ||
             s.insecure_skip_verify;
  if (s.cert.empty() != s.key.empty())
    throw Exception(Error::bad_request(
        module + " options tls_cert and tls_key go together: give both (or neither)"));
  return s;
}

namespace detail {

[[noreturn]] inline void refuse(const std::string& module, const std::string& what,
                                const boost::system::error_code& ec) {
  throw Exception(Error::bad_request(module + ": " + what + ": " + ec.message()));
}

inline void restrict_versions(boost::asio::ssl::context& ctx) {
  namespace ssl = boost::asio::ssl;
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
}

inline bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(host, ec);
  return !ec;
}

}  // namespace detail

// Throw micro::Exception (400) naming the file that cannot be used.
inline std::unique_ptr<boost::asio::ssl::context> make_server_context(const TlsSettings& tls,
                                                                      const std::string& module) {
  namespace ssl = boost::asio::ssl;
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  detail::restrict_versions(*ctx);
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(tls.cert, ec);
  if (ec) detail::refuse(module, "cannot use tls_cert '" + tls.cert + "'", ec);
  ctx->use_private_key_file(tls.key, ssl::context::pem, ec);
  if (ec) detail::refuse(module, "cannot use tls_key '" + tls.key + "'", ec);
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
    throw Exception(Error::bad_request(module + ": tls_key '" + tls.key +
                                       "' does not match tls_cert '" + tls.cert + "'"));
  return ctx;
}

inline std::unique_ptr<boost::asio::ssl::context> make_client_context(const TlsSettings& tls,
                                                                      const Logger& log,
                                                                      const std::string& module) {
  namespace ssl = boost::asio::ssl;
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  detail::restrict_versions(*ctx);
  boost::system::error_code ec;
  if (tls.insecure_skip_verify) {
    log.warn(module,
             ": tls_insecure_skip_verify = true: server certificates and names are NOT "
             "checked; anyone can impersonate a server. Use it in tests only.");
    ctx->set_verify_mode(ssl::verify_none);
    return ctx;
  }
  if (tls.ca.empty()) {
    ctx->set_default_verify_paths(ec);
    if (ec) detail::refuse(module, "cannot load the system's CA certificates", ec);
  } else {
    ctx->load_verify_file(tls.ca, ec);
    if (ec) detail::refuse(module, "cannot use tls_ca '" + tls.ca + "'", ec);
  }
  ctx->set_verify_mode(ssl::verify_peer);
  return ctx;
}

// Before a client handshake: SNI and the name to verify (`server_name`, else `host`).
inline Error prepare_client(SSL* ssl, const TlsSettings& tls, const std::string& host) {
  const std::string& name = tls.server_name.empty() ? host : tls.server_name;
  const bool ip = detail::is_ip_literal(name);
  if (!ip && SSL_set_tlsext_host_name(ssl, name.c_str()) != 1)
    return Error::bad_request("TLS: cannot send '" + name + "' as SNI");
  if (!tls.insecure_skip_verify) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    const int set = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                       : X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
    if (set != 1) return Error::bad_request("TLS: cannot verify against the name '" + name + "'");
  }
  return {};
}

// "TLS handshake with 127.0.0.1:8443 failed: certificate verify failed (certificate has
// expired)": the OpenSSL reason, and the certificate check's when that is what failed.
inline std::string handshake_failure(SSL* ssl, const boost::system::error_code& ec,
                                     const std::string& peer) {
  namespace net = boost::asio;
  std::string reason = ec.message();
  if (ec.category() == net::error::get_ssl_category()) {
    // Asio's text for an OpenSSL error ends with the library name: "... (SSL routines)".
    if (const char* text = ERR_reason_error_string(static_cast<unsigned long>(ec.value())))
      reason = text;
  }
  const long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) reason += std::string(" (") + X509_verify_cert_error_string(verify) + ")";
  if (ec == net::error::eof || ec == net::ssl::error::stream_truncated)
    reason = "the peer closed the connection (is it a TLS server? does it accept this client?)";
  return "TLS handshake with " + peer + " failed: " + reason;
}

}  // namespace micro::tls
