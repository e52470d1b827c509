// "host:port" and "[v6]:port" as dial and listen take them.
#pragma once

#include <string>
#include <string_view>

namespace micro::transport_http {

struct HostPort {
  std::string host;  // without brackets; may be empty (listen: every interface)
  std::string port;
};

// False when `address` is not host:port with a numeric port.
inline bool split_host_port(std::string_view address, HostPort& out) {
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) return false;
  std::string_view host = address.substr(0, colon);
  const std::string_view port = address.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string_view::npos)
    return false;
  if (std::stoul(std::string(port)) > 65535) return false;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  else if (host.find(':') != std::string_view::npos)
    return false;  // an IPv6 host needs brackets
  out.host = std::string(host);
  out.port = std::string(port);
  return true;
}

}  // namespace micro::transport_http
