// The transport's options (the [transport] table), read and checked once at creation.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "micro/plugin.hpp"
#include "micro/tls_common.hpp"

namespace micro::transport_http {

using Millis = std::chrono::milliseconds;

// What a request or response may hold; also what the request parser (and its fuzzer) enforces.
struct Limits {
  uint32_t max_header_bytes = 16384;
  uint64_t max_body_bytes = 4u << 20;  // a unary body, or one stream frame
};

// TLS (docs: README.md "TLS"): the options shared with broker-http (micro/tls_common.hpp).
using TlsSettings = micro::tls::TlsSettings;

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
  // Plaintext HTTP/2 with prior knowledge (RFC 9113 3.3): dials open with the HTTP/2 preface,
  // and the listener tells HTTP/2 from HTTP/1.1 by a connection's first bytes.
  bool h2c = false;
  int http2_connections = 2;  // HTTP/2 connections a client opens per address, all at once

  static std::vector<OptionSpec> option_specs();
  // Reads the options; throws micro::Exception (400) naming a bad one.
  static Settings from(const Options& options);
};

}  // namespace micro::transport_http
