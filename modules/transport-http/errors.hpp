// Network failures as micro::Errors that name the connection and say what happened:
// "connection to 127.0.0.1:9 refused" (503), "... reset by the peer while reading the response"
// (503), "... timed out after 30000 ms while reading the request body" (408).
#pragma once

#include <boost/asio/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <string>
#include <string_view>

#include "settings.hpp"
#include "wire.hpp"

namespace micro::transport_http {

// `peer`: "connection to 127.0.0.1:9" or "connection from 127.0.0.1:5000"; `doing`: "reading the
// response"; `timeout`: what the operation was allowed.
inline Error io_error(const boost::beast::error_code& ec, const std::string& peer,
                      std::string_view doing, Millis timeout) {
  namespace net = boost::asio;
  namespace http = boost::beast::http;
  const std::string while_doing = " while " + std::string(doing);
  if (ec == boost::beast::error::timeout)
    return Error(408,
                 peer + " timed out after " + std::to_string(timeout.count()) + " ms" + while_doing,
                 kModule);
  if (ec == net::error::connection_refused) return Error(503, peer + " refused", kModule);
  if (ec == net::error::connection_reset || ec == net::error::broken_pipe)
    return Error(503, peer + " reset by the peer" + while_doing, kModule);
  if (ec == net::error::eof || ec == http::error::end_of_stream ||
      ec == http::error::partial_message)
    return Error(503, peer + " closed by the peer" + while_doing, kModule);
  if (ec == net::error::operation_aborted)
    return Error(499, peer + " closed" + while_doing, kModule);
  return Error(503, peer + ": " + ec.message() + while_doing, kModule);
}

// True for the ways a peer that closed an idle keep-alive connection shows up.
inline bool closed_by_peer(const boost::beast::error_code& ec) {
  namespace net = boost::asio;
  namespace http = boost::beast::http;
  return ec == http::error::end_of_stream || ec == net::error::eof ||
         ec == net::error::connection_reset || ec == net::error::broken_pipe ||
         ec == net::error::not_connected;
}

// True for errors Beast's parser reports about the bytes themselves (not the connection).
inline bool is_parse_error(const boost::beast::error_code& ec) {
  namespace http = boost::beast::http;
  return ec.category() == http::make_error_code(http::error::bad_method).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message &&
         ec != http::error::need_more && ec != http::error::need_buffer;
}

}  // namespace micro::transport_http
