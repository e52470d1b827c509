// broker-nats' options (the [broker] table), read and checked once at creation.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "micro/plugin.hpp"

namespace micro::broker_nats {

using Millis = std::chrono::milliseconds;

struct ServerUrl {
  std::string host;
  std::string port;
  std::string text() const { return "nats://" + host + ":" + port; }
};

// "nats://host:port", "host:port" or "host" (port 4222); IPv6 hosts in brackets. Throws
// micro::Exception (400) naming the option on anything else (tls:// included: no TLS yet).
ServerUrl parse_server_url(const std::string& text, const char* option);

struct Settings {
  std::vector<ServerUrl> servers;  // tried in turn
  std::string name;
  std::string user, pass, token;
  Millis connect_timeout{2000};       // TCP connect + INFO + CONNECT/PING answered by PONG
  Millis ping_interval{120000};       // a PING this often; max_pings_out unanswered = dead
  int max_pings_out = 2;
  uint64_t max_pending_bytes = 8u << 20;  // publishes not yet written (outage included)
  Millis reconnect_wait{100};         // first wait before reconnecting; doubles each failure
  Millis reconnect_wait_max{2000};    // ... up to this

  static std::vector<OptionSpec> option_specs();
  static Settings from(const Options& options);
};

}  // namespace micro::broker_nats
