// The client side (docs/rpc-wire.md): a dialed socket sends requests and receives their
// responses over a kept-alive connection, taken from the pool when one is idle; or, dialed with
// stream = true, carries one stream of frames both ways.
#pragma once

#include <string>

#include "micro/transport.hpp"
#include "runtime.hpp"

namespace micro::transport_http {

// Dials `address`; `on_dialed` runs once, on a transport thread (or here, for a pooled
// connection).
void dial_http(Runtime& runtime, const std::string& address, const DialOptions& options,
               SocketImplCallback on_dialed);

}  // namespace micro::transport_http
