#include "runtime.hpp"

#include <algorithm>

#include "h2.hpp"

namespace micro::transport_http {

namespace {
std::vector<std::unique_ptr<net::io_context>> make_contexts(int threads) {
  std::vector<std::unique_ptr<net::io_context>> contexts;
  for (int i = 0; i < std::max(threads, 1); ++i)
    contexts.push_back(std::make_unique<net::io_context>(1));  // one thread runs each
  return contexts;
}
}  // namespace

Runtime::Runtime(const Settings& s, const Logger& logger)
    : contexts(make_contexts(s.threads)),
      ioc(*contexts.front()),
      settings(s),
      log(logger),
      pool(ioc, s.pool_size, s.pool_idle),
      tls_pool(ioc, s.pool_size, s.pool_idle),
      h2_pool(std::make_unique<H2ClientPool>(s.http2_connections)) {
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
