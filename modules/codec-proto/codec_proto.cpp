// codec-proto: protobuf binary on the wire. The canonical form a handler reads is protobuf
// binary too, so this codec never transcodes: it checks the bytes are well-formed (against the
// schema when there is one, naming the field and offset of the first fault) and passes them on.
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include "micro/content_type.hpp"
#include "micro/protobuf.hpp"

namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::internal::WireFormatLite;

constexpr int kMaxDepth = 64;

const char* wire_type_name(int type) {
  switch (type) {
    case WireFormatLite::WIRETYPE_VARINT: return "varint";
    case WireFormatLite::WIRETYPE_FIXED64: return "fixed64";
    case WireFormatLite::WIRETYPE_LENGTH_DELIMITED: return "length-delimited";
    case WireFormatLite::WIRETYPE_START_GROUP: return "start-group";
    case WireFormatLite::WIRETYPE_END_GROUP: return "end-group";
    case WireFormatLite::WIRETYPE_FIXED32: return "fixed32";
    default: return "invalid";
  }
}

// Walks protobuf wire format without building a message. `d` may be NULL (no schema): then only
// the framing is checked. `base` is where `bytes` starts in the whole body, for error offsets.
micro::Error check_wire(std::string_view bytes, const Descriptor* d, size_t base, int depth) {
  if (depth > kMaxDepth)
    return micro::Error::bad_request("protobuf body nests deeper than " +
                                     std::to_string(kMaxDepth) + " at offset " +
                                     std::to_string(base));
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  const std::string where = d != nullptr ? " of " + d->full_name() : "";
  while (true) {
    if (static_cast<size_t>(in.CurrentPosition()) == bytes.size()) return {};
    const size_t at = base + static_cast<size_t>(in.CurrentPosition());
    const uint32_t tag = in.ReadTag();
    if (tag == 0 || WireFormatLite::GetTagFieldNumber(tag) == 0)
      return micro::Error::bad_request("malformed protobuf: invalid field tag" + where +
                                       " at offset " + std::to_string(at));
    const int number = WireFormatLite::GetTagFieldNumber(tag);
    const int wire = WireFormatLite::GetTagWireType(tag);
    const FieldDescriptor* field = d != nullptr ? d->FindFieldByNumber(number) : nullptr;
    if (field != nullptr) {
      const int expected = WireFormatLite::WireTypeForFieldType(
          static_cast<WireFormatLite::FieldType>(field->type()));
      const bool packed = field->is_repeated() && field->is_packable() &&
                          wire == WireFormatLite::WIRETYPE_LENGTH_DELIMITED;
      if (wire != expected && !packed)
        return micro::Error::bad_request(
            "malformed protobuf: field '" + field->name() + "' (" + std::to_string(number) + ")" +
            where + " at offset " + std::to_string(at) + " is " + wire_type_name(wire) +
            ", expected " + wire_type_name(expected));
      if (field->type() == FieldDescriptor::TYPE_MESSAGE) {
        uint32_t length = 0;
        if (!in.ReadVarint32(&length) ||
            length > bytes.size() - static_cast<size_t>(in.CurrentPosition()))
          return micro::Error::bad_request("malformed protobuf: field '" + field->name() + "'" +
                                           where + " at offset " + std::to_string(at) +
                                           " is truncated");
        const size_t body = static_cast<size_t>(in.CurrentPosition());
        micro::Error inner = check_wire(bytes.substr(body, length), field->message_type(),
                                        base + body, depth + 1);
        if (!inner.ok()) return inner;
        in.Skip(static_cast<int>(length));
        continue;
      }
    }
    if (!WireFormatLite::SkipField(&in, tag))
      return micro::Error::bad_request(
          "malformed protobuf: field " +
          (field != nullptr ? "'" + field->name() + "' (" + std::to_string(number) + ")"
                            : std::to_string(number)) +
          where + " at offset " + std::to_string(at) + " is truncated or malformed");
  }
}

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
    const std::string media = micro::media_type(content_type);
    if (media != "application/octet-stream") {
      if (media != "application/protobuf" && media != "application/x-protobuf")
        return micro::Error(MICRO_CODE_UNSUPPORTED_MEDIA_TYPE,
                            "codec-proto does not handle '" + std::string(content_type) +
                                "' (it handles application/protobuf, application/x-protobuf, "
                                "application/octet-stream)");
      if (validate) {
        const Descriptor* descriptor = nullptr;
        if (schema != nullptr) {
          auto parsed = schemas_.get(*schema);
          if (!parsed.ok()) return parsed.error;
          descriptor = parsed.value->message;
        }
        micro::Error e = check_wire(bytes, descriptor, 0, 0);
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
