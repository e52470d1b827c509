#include "settings.hpp"

#include <limits>

#include "micro/callback.hpp"

namespace micro::transport_http {

std::vector<OptionSpec> Settings::option_specs() {
  std::vector<OptionSpec> specs = {
      {"threads", MICRO_OPTION_INT, "Threads running the transport's I/O and callbacks", "2"},
      {"connect_timeout_ms", MICRO_OPTION_INT, "Resolve + connect, per dial (408 after)", "5000"},
      {"read_timeout_ms", MICRO_OPTION_INT,
       "Reading a message once started, and waiting for a response (408 after)", "30000"},
      {"write_timeout_ms", MICRO_OPTION_INT, "Writing one message or frame (408 after)", "30000"},
      {"idle_timeout_ms", MICRO_OPTION_INT,
       "A server connection waiting for its next request, or a stream for its next frame", "60000"},
      {"header_timeout_ms", MICRO_OPTION_INT,
       "Receiving a complete request head from its first byte (slowloris defence)", "10000"},
      {"max_header_bytes", MICRO_OPTION_INT, "Largest request or response head (431 above)",
       "16384"},
      {"max_body_bytes", MICRO_OPTION_INT, "Largest unary body or stream frame (413 above)",
       "4194304"},
      {"pool_size", MICRO_OPTION_INT, "Idle client connections kept per address (0: no pool)",
       "64"},
      {"pool_idle_ms", MICRO_OPTION_INT, "Idle pooled connections are closed after this", "30000"},
      {"http2", MICRO_OPTION_BOOL, "Offer HTTP/2 through ALPN on TLS connections", "true"},
      {"h2c", MICRO_OPTION_BOOL,
       "Plaintext HTTP/2 (prior knowledge): dials speak HTTP/2 from the first byte; the listener "
       "serves HTTP/2 and HTTP/1.1 alike",
       "false"},
      {"http2_connections", MICRO_OPTION_INT,
       "HTTP/2 connections a client opens per address (at its first dial); each dial goes on the "
       "one with the fewest sockets",
       "2"},
  };
  for (auto& spec : micro::tls::option_specs()) specs.push_back(std::move(spec));
  return specs;
}

namespace {

int64_t read_int(const Options& options, const char* name, int64_t fallback, int64_t min,
                 int64_t max) {
  const int64_t value = options.get_int(name, fallback);
  if (value < min || value > max)
    throw Exception(Error::bad_request("transport-http option " + std::string(name) + " = " +
                                       std::to_string(value) + " is out of range: use " +
                                       std::to_string(min) + ".." + std::to_string(max)));
  return value;
}

Millis read_ms(const Options& options, const char* name, Millis fallback) {
  constexpr int64_t kDay = 24LL * 3600 * 1000;
  return Millis(read_int(options, name, fallback.count(), 1, kDay));
}

}  // namespace

Settings Settings::from(const Options& options) {
  Settings s;
  s.threads = static_cast<int>(read_int(options, "threads", s.threads, 1, 256));
  s.connect_timeout = read_ms(options, "connect_timeout_ms", s.connect_timeout);
  s.read_timeout = read_ms(options, "read_timeout_ms", s.read_timeout);
  s.write_timeout = read_ms(options, "write_timeout_ms", s.write_timeout);
  s.idle_timeout = read_ms(options, "idle_timeout_ms", s.idle_timeout);
  s.header_timeout = read_ms(options, "header_timeout_ms", s.header_timeout);
  s.limits.max_header_bytes = static_cast<uint32_t>(
      read_int(options, "max_header_bytes", s.limits.max_header_bytes, 256, 1 << 30));
  s.limits.max_body_bytes = static_cast<uint64_t>(
      read_int(options, "max_body_bytes", static_cast<int64_t>(s.limits.max_body_bytes), 1,
               std::numeric_limits<uint32_t>::max()));
  s.pool_size = static_cast<size_t>(read_int(options, "pool_size", 64, 0, 1 << 20));
  s.pool_idle = read_ms(options, "pool_idle_ms", s.pool_idle);
  s.tls = micro::tls::read_settings(options, "transport-http");
  s.http2 = options.get_bool("http2", true);
  s.h2c = options.get_bool("h2c", false);
  s.http2_connections =
      static_cast<int>(read_int(options, "http2_connections", s.http2_connections, 1, 64));
  if (s.h2c && (s.tls.client || s.tls.server()))
    throw Exception(Error::bad_request(
        "transport-http option h2c = true is for plaintext connections, and TLS is configured: "
        "over TLS, HTTP/2 is negotiated through ALPN (option http2)"));
  return s;
}

}  // namespace micro::transport_http
