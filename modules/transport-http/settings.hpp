// The transport's options (the [transport] table), read and checked once at creation.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "micro/plugin.hpp"

namespace micro::transport_http {

using Millis = std::chrono::milliseconds;

// What a request or response may hold; also what the request parser (and its fuzzer) enforces.
struct Limits {
  uint32_t max_header_bytes = 16384;
  uint64_t max_body_bytes = 4u << 20;  // a unary body, or one stream frame
};

// TLS (docs: README.md "TLS"). A client with `enabled` dials TLS; a server with cert and key
// listens TLS only.
struct TlsSettings {
  std::string cert;          // PEM certificate chain (server)
  std::string key;           // PEM private key (server)
  std::string ca;            // PEM CAs the client trusts; empty: the system's
  std::string server_name;   // name the client verifies and sends as SNI; empty: the dialed host
  bool insecure_skip_verify = false;  // tests only: no certificate or name check
  bool client = false;       // tls_client = true (or any client-side tls_* option)
  bool server() const { return !cert.empty(); }
};

struct Settings {
  int threads = 2;
  Millis connect_timeout{5000};  // resolve + TCP connect
  Millis read_timeout{30000};    // the rest of a message once it has started; a response
  Millis write_timeout{30000};   // one message, frame or reply written
  Millis idle_timeout{60000};    // a server connection waiting for its next request
  Millis header_timeout{10000};  // a complete request head, from its first byte (slowloris)
  Millis linger{1000};           // draining a rejected request before closing, so the reply lands
  Limits limits;
  size_t pool_size = 64;    // idle client connections kept per address; 0 disables pooling
  Millis pool_idle{30000};  // an idle pooled connection older than this is closed
  TlsSettings tls;
  bool http2 = true;  // offer h2 through ALPN (TLS only)

  static std::vector<OptionSpec> option_specs();
  // Reads the options; throws micro::Exception (400) naming a bad one.
  static Settings from(const Options& options);
};

}  // namespace micro::transport_http
