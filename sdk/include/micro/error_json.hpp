// The one JSON form of an error on the wire: {"id","code","detail","status"}, as go-micro writes
// it. Written and read with protobuf's JSON support (google.protobuf.Struct), not by hand.
#pragma once

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <string>
#include <string_view>

#include "micro/error.hpp"

namespace micro {

inline std::string error_to_json(const Error& error) {
  google::protobuf::Struct s;
  auto& fields = *s.mutable_fields();
  fields["id"].set_string_value(error.id());
  fields["code"].set_number_value(error.code());
  fields["detail"].set_string_value(error.detail());
  fields["status"].set_string_value(error.status());
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(s, &out).ok()) return "{}";
  return out;
}

// Reads an error written by error_to_json (or by go-micro). When `json` is not such an object,
// the result carries `fallback_code` and the text itself as the detail, so nothing is lost.
inline Error error_from_json(std::string_view json, int32_t fallback_code) {
  google::protobuf::Struct s;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (google::protobuf::util::JsonStringToMessage(json, &s, options).ok()) {
    const auto& f = s.fields();
    auto text = [&](const char* key) {
      auto it = f.find(key);
      return it != f.end() && it->second.has_string_value() ? it->second.string_value()
                                                            : std::string();
    };
    auto code = f.find("code");
    const int32_t c = code != f.end() && code->second.has_number_value()
                          ? static_cast<int32_t>(code->second.number_value())
                          : fallback_code;
    if (c != 0 && (f.count("detail") != 0 || f.count("code") != 0))
      return Error(c, text("detail"), text("id"), text("status"));
  }
  return Error(fallback_code, std::string(json));
}

}  // namespace micro
