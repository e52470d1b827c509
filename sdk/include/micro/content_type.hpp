// Content-type negotiation: pick the codec for a Content-Type (or Accept) among those a client or
// server was given, with a 415 that names the supported types when none fits.
#pragma once

#include <cctype>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "micro/codec.hpp"

namespace micro {

// The media type of a Content-Type value, lower-cased, without parameters:
// "Application/JSON; charset=utf-8" -> "application/json".
inline std::string media_type(std::string_view content_type) {
  std::string_view type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.remove_prefix(1);
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
  std::string out(type);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Whether the media type of a Content-Type value is `lower` (a lower-case media type), as
// media_type(content_type) == lower, without building a string.
inline bool media_type_is(std::string_view content_type, std::string_view lower) noexcept {
  std::string_view type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.remove_prefix(1);
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
  if (type.size() != lower.size()) return false;
  for (size_t i = 0; i < type.size(); ++i) {
    char c = type[i];  // ASCII only, as media types are: no locale call per character
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != lower[i]) return false;
  }
  return true;
}

// The codecs of a stack, by the media types they handle (first codec wins a shared type).
class CodecSet {
 public:
  CodecSet() = default;
  explicit CodecSet(const std::vector<micro_codec_t>& codecs) {
    for (const auto& handle : codecs) add(Codec(handle));
  }
  void add(const Codec& codec) {
    for (std::string_view type : codec.content_types()) {
      std::string media = media_type(type);
      bool known = false;
      for (const auto& [t, c] : by_type_) known = known || t == media;
      if (!known) by_type_.emplace_back(std::move(media), codec);
    }
  }

  // The codec for `content_type`; 415 naming every supported type when there is none.
  Result<Codec> find(std::string_view content_type) const {
    for (const auto& [type, codec] : by_type_)
      if (media_type_is(content_type, type)) return {Error{}, codec};
    return {Error(MICRO_CODE_UNSUPPORTED_MEDIA_TYPE,
                  "unsupported content type '" + std::string(content_type) +
                      "'; supported: " + supported()),
            Codec{}};
  }

  // The codec for a response: the first type of `accept` (a comma-separated list; "*/*" or empty
  // means "same as the request") that a codec handles, else the request's own type.
  Result<std::pair<std::string, Codec>> for_response(std::string_view accept,
                                                     std::string_view request_type) const {
    size_t start = 0;
    while (start <= accept.size()) {
      const size_t comma = accept.find(',', start);
      const std::string_view item =
          accept.substr(start, comma == std::string_view::npos ? comma : comma - start);
      if (!media_type_is(item, "") && !media_type_is(item, "*/*"))
        for (const auto& [type, codec] : by_type_)
          if (media_type_is(item, type)) return {Error{}, {type, codec}};
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
    auto same = find(request_type);
    return {same.error, {media_type(request_type), same.value}};
  }

  // "application/json, application/protobuf, ..."
  std::string supported() const {
    std::string out;
    for (const auto& [type, codec] : by_type_) out += (out.empty() ? "" : ", ") + type;
    return out.empty() ? "none (no codec is configured)" : out;
  }
  bool empty() const noexcept { return by_type_.empty(); }

 private:
  std::vector<std::pair<std::string, Codec>> by_type_;
};

}  // namespace micro
