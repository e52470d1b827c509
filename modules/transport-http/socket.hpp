// The SocketImpl handed to users: a thin owner of a session. Destroying it releases the session
// (pending operations complete with 499 before the destructor returns, and no callback runs
// after); the session itself lives on, by shared ownership, until its last handler has run.
#pragma once

#include <memory>
#include <string>

#include "frame.hpp"
#include "micro/transport.hpp"
#include "runtime.hpp"

namespace micro::transport_http {

class HttpSocket final : public SocketImpl {
 public:
  explicit HttpSocket(std::shared_ptr<SessionBase> session)
      : session_(std::move(session)),
        local_(session_->local_address()),
        remote_(session_->remote_address()),
        fast_(dynamic_cast<CFastPath*>(session_.get())) {}
  ~HttpSocket() override { session_->release(); }

  void send(Message message, Done done) override {
    session_->send(std::move(message), std::move(done));
  }
  void recv(MessageCallback on_message) override { session_->recv(std::move(on_message)); }
  void close_send(Done done) override { session_->close_send(std::move(done)); }
  void close() override { session_->close(); }
  bool send_c(const micro_message_t& message, micro_done_fn done, void* ctx) noexcept override {
    return fast_ != nullptr && fast_->send_c(message, done, ctx);
  }
  bool recv_c(micro_message_fn on_message, void* ctx) noexcept override {
    return fast_ != nullptr && fast_->recv_c(on_message, ctx);
  }
  std::string_view local_address() const override { return local_; }
  std::string_view remote_address() const override { return remote_; }

 private:
  std::shared_ptr<SessionBase> session_;
  const std::string local_;
  const std::string remote_;
  CFastPath* const fast_;  // the session's, when it has them
};

}  // namespace micro::transport_http
