#include "runtime.hpp"

#include "h2.hpp"

namespace micro::transport_http {

Runtime::Runtime(const Settings& s, const Logger& logger)
    : ioc(s.threads),
      settings(s),
      log(logger),
      pool(ioc, s.pool_size, s.pool_idle),
      tls_pool(ioc, s.pool_size, s.pool_idle),
      h2_pool(std::make_unique<H2ClientPool>()) {
  if (s.tls.server()) tls_server = make_server_context(s);
  if (s.tls.client) tls_client = make_client_context(s, log);
}

Runtime::~Runtime() = default;

void Runtime::close_pools() {
  pool.close();
  tls_pool.close();
  h2_pool->close();
}

}  // namespace micro::transport_http
