// The server side of one accepted connection (docs/rpc-wire.md): recv returns each request in
// turn, send writes its response; a request with Micro-Stream: 1 turns the exchange into a
// stream of frames both ways.
#pragma once

#include <boost/beast/core/tcp_stream.hpp>
#include <memory>
#include <string_view>

#include "runtime.hpp"

namespace micro::transport_http {

// Starts serving an accepted connection (TCP, or TLS after its handshake); the session registers
// itself with the runtime. `already_read`: bytes the listener read first (h2c's sniff), parsed
// before anything read later.
template <class Stream>
std::shared_ptr<SessionBase> make_server_session(Runtime& runtime, Stream stream,
                                                 std::string_view already_read = {});

}  // namespace micro::transport_http
