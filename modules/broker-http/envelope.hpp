// The envelope a publisher POSTs to a subscriber endpoint (README.md, "Wire format"), and the
// checks the subscriber endpoint makes on a request before it parses one.
#pragma once

#include <string>
#include <string_view>

#include "micro/types.hpp"

namespace micro::broker_http {

// The header that carries the topic inside the envelope (as go-micro writes it).
inline constexpr const char* kTopicHeader = "Micro-Topic";

// {"Header":{...,"Micro-Topic":topic},"Body":"<base64>"}.
std::string encode_envelope(std::string_view topic, const Message& message);

// Parses an envelope into `out` (header keys lower-cased, "micro-topic" kept) and its topic.
// Bad input is a 400 naming what is wrong; never throws.
Error decode_envelope(std::string_view json, Message& out, std::string& topic);

// What a request's body is: go-micro's JSON envelope, or a batch (batch.hpp).
enum class BodyKind { envelope, batch };

// The subscriber endpoint's request checks, before the body is parsed: the method must be POST
// (405), the path `path` (404), the media type application/json, or `batch_type` when that is
// not empty (415). `target` is the request target ("/?id=x"); on success `id` is its `id` query
// parameter, percent-decoded, and `kind` says which body it is.
Error check_request(std::string_view method, std::string_view target,
                    std::string_view content_type, std::string_view path,
                    std::string_view batch_type, std::string& id, BodyKind& kind);

// The subscription id as a query: "?id=<percent-encoded id>".
std::string id_query(std::string_view id);

}  // namespace micro::broker_http
