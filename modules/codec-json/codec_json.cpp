// codec-json: JSON on the wire, protobuf binary as the canonical form, translated with
// protobuf's own JSON mapping (proto3 JSON: lowerCamelCase and original field names accepted).
// Untyped messages (no schema) must be valid JSON and pass through unchanged.
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include "micro/content_type.hpp"
#include "micro/protobuf.hpp"

namespace {

namespace util = google::protobuf::util;

class JsonCodec final : public micro::CodecPlugin {
 public:
  static std::vector<micro::OptionSpec> options() {
    return {
        {"max_body_bytes", MICRO_OPTION_INT, "Largest body accepted, in bytes (413 above)",
         "4194304"},
        {"ignore_unknown_fields", MICRO_OPTION_BOOL,
         "Accept JSON fields the schema lacks (default: reject, naming the field)", "false"},
        {"preserve_proto_field_names", MICRO_OPTION_BOOL,
         "Write original field names (user_id) instead of lowerCamelCase (userId)", "false"},
        {"emit_defaults", MICRO_OPTION_BOOL, "Write fields that hold their default value", "false"},
        {"enums_as_ints", MICRO_OPTION_BOOL, "Write enums as numbers, not names", "false"},
    };
  }

  explicit JsonCodec(const micro::CreateContext& ctx)
      : max_body_(ctx.options().get_int("max_body_bytes", 4 << 20)) {
    if (max_body_ <= 0) throw micro::Exception(micro::Error::bad_request("max_body_bytes must be > 0"));
    parse_.ignore_unknown_fields = ctx.options().get_bool("ignore_unknown_fields", false);
    print_.preserve_proto_field_names = ctx.options().get_bool("preserve_proto_field_names", false);
    print_.always_print_primitive_fields = ctx.options().get_bool("emit_defaults", false);
    print_.always_print_enums_as_ints = ctx.options().get_bool("enums_as_ints", false);
  }

  std::vector<std::string> content_types() override { return {"application/json"}; }

  micro::Error decode(std::string_view content_type, std::string_view json,
                      const micro::SchemaRef* schema, std::string& out) override {
    if (micro::Error e = check(content_type, json); !e.ok()) return e;
    if (json.find_first_not_of(" \t\r\n") == std::string_view::npos)
      return micro::Error::bad_request("empty body: expected a JSON value");
    if (schema == nullptr) {
      // Untyped: any JSON value is accepted as it is, once known to be JSON.
      google::protobuf::Value value;
      const auto status = util::JsonStringToMessage(json, &value, util::JsonParseOptions());
      if (!status.ok()) return micro::Error::bad_request("malformed JSON: " + message(status));
      out.append(json.data(), json.size());
      return {};
    }
    auto parsed = schemas_.get(*schema);
    if (!parsed.ok()) return parsed.error;
    const auto status = util::JsonToBinaryString(parsed.value->resolver.get(),
                                                 parsed.value->type_url, json, &out, parse_);
    if (!status.ok())
      return micro::Error::bad_request("JSON does not match " + parsed.value->message->full_name() +
                                       ": " + message(status));
    return {};
  }

  micro::Error encode(std::string_view content_type, std::string_view canonical,
                      const micro::SchemaRef* schema, std::string& out) override {
    if (micro::Error e = check(content_type, canonical); !e.ok()) return e;
    if (schema == nullptr) {
      out.append(canonical.data(), canonical.size());  // an untyped handler's own JSON
      return {};
    }
    auto parsed = schemas_.get(*schema);
    if (!parsed.ok()) return parsed.error;
    // protobuf's binary-to-JSON converter trusts its input: on a packed field whose elements do
    // not fill it (bytes 52 01 for field 10 of microtest.Person) it never returns, growing its
    // output until memory runs out, and a truncated nested field comes out as partial JSON with
    // an OK status. So the bytes are checked first.
    if (micro::Error e = micro::protobuf::check_wire(canonical, parsed.value->message); !e.ok())
      return micro::Error::internal("cannot write " + parsed.value->message->full_name() +
                                    " as JSON: its " + std::to_string(canonical.size()) +
                                    " bytes are not well-formed protobuf (" + e.detail() + ")");
    // The stream form reads the caller's bytes in place (the string form would copy them).
    google::protobuf::io::ArrayInputStream input(canonical.data(),
                                                 static_cast<int>(canonical.size()));
    util::Status status;
    {
      google::protobuf::io::StringOutputStream output(&out);
      status = util::BinaryToJsonStream(parsed.value->resolver.get(), parsed.value->type_url,
                                        &input, &output, print_);
    }
    if (!status.ok())
      return micro::Error::internal("cannot write " + parsed.value->message->full_name() +
                                    " as JSON: " + message(status));
    return {};
  }

 private:
  micro::Error check(std::string_view content_type, std::string_view body) const {
    if (body.size() > static_cast<size_t>(max_body_))
      return micro::Error(413, "body of " + std::to_string(body.size()) +
                                   " bytes is over the limit of " + std::to_string(max_body_) +
                                   " (codec-json max_body_bytes)");
    if (micro::media_type(content_type) != "application/json")
      return micro::Error(MICRO_CODE_UNSUPPORTED_MEDIA_TYPE,
                          "codec-json does not handle '" + std::string(content_type) +
                              "' (it handles application/json)");
    return {};
  }
  static std::string message(const util::Status& status) {
    return std::string(status.message());
  }

  const int64_t max_body_;
  util::JsonParseOptions parse_;
  util::JsonPrintOptions print_;
  micro::protobuf::SchemaCache schemas_;
};

}  // namespace

MICRO_MODULE("codec-json", "1.0.0", "JSON through protobuf's JSON mapping",
             micro::plugin<JsonCodec>("codec-json", "application/json"));
