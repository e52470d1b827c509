#include "settings.hpp"

#include "micro/callback.hpp"

namespace micro::broker_nats {
namespace {

[[noreturn]] void bad_option(const std::string& detail) {
  throw Exception(Error::bad_request("broker-nats option " + detail));
}

int64_t read_int(const Options& options, const char* name, int64_t fallback, int64_t min,
                 int64_t max) {
  const int64_t value = options.get_int(name, fallback);
  if (value < min || value > max)
    bad_option(std::string(name) + " = " + std::to_string(value) + " is out of range: use " +
               std::to_string(min) + ".." + std::to_string(max));
  return value;
}

Millis read_ms(const Options& options, const char* name, Millis fallback) {
  constexpr int64_t kDay = 24LL * 3600 * 1000;
  return Millis(read_int(options, name, fallback.count(), 1, kDay));
}

}  // namespace

ServerUrl parse_server_url(const std::string& text, const char* option) {
  std::string rest = text;
  const size_t scheme = rest.find("://");
  if (scheme != std::string::npos) {
    const std::string name = rest.substr(0, scheme);
    if (name != "nats")
      bad_option(std::string(option) + ": '" + text + "' uses " + name +
                 "://; broker-nats speaks plain nats:// only (no TLS yet)");
    rest = rest.substr(scheme + 3);
  }
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.find('@') != std::string::npos)
    bad_option(std::string(option) + ": '" + text +
               "' carries credentials; give them as user/pass or token instead");
  ServerUrl url;
  if (!rest.empty() && rest.front() == '[') {  // [v6]:port
    const size_t close = rest.find(']');
    if (close == std::string::npos)
      bad_option(std::string(option) + ": '" + text + "' has an unclosed '['");
    url.host = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
    if (!rest.empty() && rest.front() != ':')
      bad_option(std::string(option) + ": '" + text + "': expected ':port' after ']'");
    url.port = rest.empty() ? "4222" : rest.substr(1);
  } else {
    const size_t colon = rest.rfind(':');
    url.host = rest.substr(0, colon);
    url.port = colon == std::string::npos ? "4222" : rest.substr(colon + 1);
  }
  bool numeric = !url.port.empty() && url.port.size() <= 5;
  for (char c : url.port) numeric = numeric && c >= '0' && c <= '9';
  if (url.host.empty() || !numeric || std::stoul(url.port) == 0 || std::stoul(url.port) > 65535)
    bad_option(std::string(option) + ": '" + text +
               "' is not a server address; write nats://host:port, e.g. nats://127.0.0.1:4222");
  return url;
}

std::vector<OptionSpec> Settings::option_specs() {
  return {
      {"servers", MICRO_OPTION_STRING_LIST,
       "NATS servers (nats://host:port), tried in turn when connecting and reconnecting; "
       "default [\"nats://127.0.0.1:4222\"] (not declared as a default so address can replace it)",
       ""},
      {"address", MICRO_OPTION_STRING,
       "One NATS server (host:port or nats://host:port); the same as servers = [address]", ""},
      {"name", MICRO_OPTION_STRING, "Connection name shown by the server; default: the service",
       ""},
      {"user", MICRO_OPTION_STRING, "User for user/password authentication", ""},
      {"pass", MICRO_OPTION_STRING, "Password for user/password authentication", ""},
      {"token", MICRO_OPTION_STRING, "Token for token authentication", ""},
      {"connect_timeout_ms", MICRO_OPTION_INT,
       "TCP connect plus the INFO/CONNECT/PONG handshake, per attempt; also how long connect() "
       "waits",
       "2000"},
      {"ping_interval_ms", MICRO_OPTION_INT, "How often a PING checks the connection", "120000"},
      {"max_pings_out", MICRO_OPTION_INT,
       "Unanswered PINGs after which the connection is dropped and re-made", "2"},
      {"max_pending_bytes", MICRO_OPTION_INT,
       "Bytes of publishes waiting to be written (during an outage too); a publish beyond fails "
       "with 503",
       "8388608"},
      {"reconnect_wait_ms", MICRO_OPTION_INT,
       "First wait before reconnecting; doubles per failed attempt", "100"},
      {"reconnect_wait_max_ms", MICRO_OPTION_INT, "Longest wait between reconnect attempts",
       "2000"},
  };
}

Settings Settings::from(const Options& options) {
  Settings s;
  const std::string address = options.get_string("address");
  if (!address.empty()) {
    if (options.has("servers"))
      bad_option("address and servers both given: name the servers in one of them");
    s.servers.push_back(parse_server_url(address, "address"));
  } else {
    std::vector<std::string> list = options.get_list("servers");
    if (!options.has("servers")) list = {"nats://127.0.0.1:4222"};
    if (list.empty()) bad_option("servers is empty: name at least one nats://host:port");
    for (size_t i = 0; i < list.size(); ++i)
      s.servers.push_back(
          parse_server_url(list[i], ("servers[" + std::to_string(i) + "]").c_str()));
  }
  s.name = options.get_string("name");
  s.user = options.get_string("user");
  s.pass = options.get_string("pass");
  s.token = options.get_string("token");
  if (!s.token.empty() && !s.user.empty())
    bad_option("token and user both given: use one way to authenticate");
  if (s.user.empty() != s.pass.empty()) bad_option("user and pass go together: give both");
  s.connect_timeout = read_ms(options, "connect_timeout_ms", s.connect_timeout);
  s.ping_interval = read_ms(options, "ping_interval_ms", s.ping_interval);
  s.max_pings_out = static_cast<int>(read_int(options, "max_pings_out", s.max_pings_out, 1, 100));
  s.max_pending_bytes = static_cast<uint64_t>(read_int(
      options, "max_pending_bytes", static_cast<int64_t>(s.max_pending_bytes), 0, 1LL << 40));
  s.reconnect_wait = read_ms(options, "reconnect_wait_ms", s.reconnect_wait);
  s.reconnect_wait_max = read_ms(options, "reconnect_wait_max_ms", s.reconnect_wait_max);
  if (s.reconnect_wait_max < s.reconnect_wait) s.reconnect_wait_max = s.reconnect_wait;
  return s;
}

}  // namespace micro::broker_nats
