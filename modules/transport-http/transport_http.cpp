// transport-http: go-micro's HTTP transport over Boost.Beast, implementing docs/rpc-wire.md.
// Threading, pooling and streams are described in runtime.hpp and README.md.
#include <thread>
#include <vector>

#include "client_session.hpp"
#include "h2.hpp"
#include "listener.hpp"
#include "micro/transport.hpp"
#include "runtime.hpp"
#include "settings.hpp"

namespace micro::transport_http {

namespace {

class HttpTransport final : public TransportPlugin {
 public:
  static std::vector<OptionSpec> options() { return Settings::option_specs(); }

  explicit HttpTransport(const CreateContext& ctx)
      : runtime_(std::make_unique<Runtime>(Settings::from(ctx.options()), ctx.logger())) {
    for (auto& context : runtime_->contexts) {
      work_.push_back(net::make_work_guard(*context));
      threads_.emplace_back([this, c = context.get()] { run(*c); });
    }
  }

  // Every socket and listener is gone (the contract); pooled and half-finished connections are
  // closed here, then the threads finish what is left and stop. Not from a transport thread.
  ~HttpTransport() override {
    runtime_->close_pools();
    runtime_->sessions.abort_all();
    for (auto& work : work_) work.reset();
    for (auto& thread : threads_) thread.join();
  }

  void dial(const std::string& address, const DialOptions& options,
            SocketImplCallback on_dialed) override {
    dial_http(*runtime_, address, options, std::move(on_dialed));
  }

  std::unique_ptr<ListenerImpl> listen(const std::string& address,
                                       SocketImplCallback on_accept) override {
    return std::make_unique<HttpListener>(*runtime_, address, std::move(on_accept));
  }

 private:
  void run(net::io_context& context) noexcept {
    for (;;) {
      try {
        context.run();
        return;
      } catch (const std::exception& e) {  // a handler threw: log it and keep serving
        runtime_->log.error("transport thread: uncaught exception: ", e.what());
      } catch (...) {
        runtime_->log.error("transport thread: uncaught exception of unknown type");
      }
    }
  }

  std::unique_ptr<Runtime> runtime_;
  std::vector<net::executor_work_guard<net::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
};

}  // namespace
}  // namespace micro::transport_http

MICRO_MODULE("transport-http", "1.0.0", "HTTP/1.1 and HTTP/2 transport (Boost.Beast, nghttp2), plaintext or TLS",
             micro::plugin<micro::transport_http::HttpTransport>(
                 "transport-http",
                 "HTTP/1.1 and HTTP/2 over TLS (Boost.Beast, OpenSSL, nghttp2): unary calls, streams, pooling"));
