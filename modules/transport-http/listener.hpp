// A listening endpoint: accepts connections and hands each, as a server socket, to on_accept,
// one at a time, on a transport thread.
#pragma once

#include <memory>
#include <string>

#include "micro/transport.hpp"
#include "runtime.hpp"

namespace micro::transport_http {

class HttpListener final : public ListenerImpl {
 public:
  // Binds and listens on `address` ("host:0" picks a port); throws micro::Exception saying why not.
  HttpListener(Runtime& runtime, const std::string& address, SocketImplCallback on_accept);
  // Stops accepting; no on_accept runs after it returns (one in progress on another thread is
  // waited for).
  ~HttpListener() override;

  std::string_view address() const override { return address_; }

 private:
  class Acceptor;
  std::shared_ptr<Acceptor> acceptor_;
  std::string address_;
};

}  // namespace micro::transport_http
