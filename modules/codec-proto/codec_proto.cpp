// codec-proto: protobuf binary on the wire. The canonical form a handler reads is protobuf
// binary too, so this codec never transcodes: it checks the bytes are well-formed (against the
// schema when there is one, naming the field and offset of the first fault) and passes them on.
#include "micro/content_type.hpp"
#include "micro/protobuf.hpp"

namespace {

class ProtoCodec final : public micro::CodecPlugin {
 public:
  static std::vector<micro::OptionSpec> options() {
    return {{"max_body_bytes", MICRO_OPTION_INT, "Largest body accepted, in bytes (413 above)",
             "4194304"},
            {"validate", MICRO_OPTION_BOOL,
             "Check protobuf bodies are well-formed before a handler sees them", "true"}};
  }

  explicit ProtoCodec(const micro::CreateContext& ctx)
      : max_body_(ctx.options().get_int("max_body_bytes", 4 << 20)),
        validate_(ctx.options().get_bool("validate", true)) {
    if (max_body_ <= 0) throw micro::Exception(micro::Error::bad_request("max_body_bytes must be > 0"));
  }

  std::vector<std::string> content_types() override {
    return {"application/protobuf", "application/x-protobuf", "application/octet-stream"};
  }

  micro::Error decode(std::string_view content_type, std::string_view wire,
                      const micro::SchemaRef* schema, std::string& out) override {
    return pass(content_type, wire, schema, out, validate_);
  }

  // Canonical is protobuf already; what a handler produced is trusted, only the size is checked.
  micro::Error encode(std::string_view content_type, std::string_view canonical,
                      const micro::SchemaRef* schema, std::string& out) override {
    return pass(content_type, canonical, schema, out, false);
  }

 private:
  micro::Error pass(std::string_view content_type, std::string_view bytes,
                    const micro::SchemaRef* schema, std::string& out, bool validate) {
    if (bytes.size() > static_cast<size_t>(max_body_))
      return micro::Error(413, "body of " + std::to_string(bytes.size()) +
                                   " bytes is over the limit of " + std::to_string(max_body_) +
                                   " (codec-proto max_body_bytes)");
    if (!micro::media_type_is(content_type, "application/octet-stream")) {
      if (!micro::media_type_is(content_type, "application/protobuf") &&
          !micro::media_type_is(content_type, "application/x-protobuf"))
        return micro::Error(MICRO_CODE_UNSUPPORTED_MEDIA_TYPE,
                            "codec-proto does not handle '" + std::string(content_type) +
                                "' (it handles application/protobuf, application/x-protobuf, "
                                "application/octet-stream)");
      if (validate) {
        const google::protobuf::Descriptor* descriptor = nullptr;
        if (schema != nullptr) {
          auto parsed = schemas_.get(*schema);
          if (!parsed.ok()) return parsed.error;
          descriptor = parsed.value->message;
        }
        micro::Error e = micro::protobuf::check_wire(bytes, descriptor);
        if (!e.ok()) return e;
      }
    }
    out.append(bytes.data(), bytes.size());
    return {};
  }

  const int64_t max_body_;
  const bool validate_;
  micro::protobuf::SchemaCache schemas_;
};

}  // namespace

MICRO_MODULE("codec-proto", "1.0.0", "Protobuf binary and raw bytes, passed through unchanged",
             micro::plugin<ProtoCodec>("codec-proto",
                                       "application/protobuf, application/x-protobuf, "
                                       "application/octet-stream"));
