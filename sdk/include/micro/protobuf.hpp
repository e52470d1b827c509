// Protobuf helpers for modules and generated code that work with schemas at run time: a cache
// that turns a micro schema (serialized FileDescriptorSet + message name) into descriptors once,
// and a check that bytes are well-formed protobuf without building a message.
// Optional: only code that includes this header needs protobuf.
#pragma once

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <google/protobuf/util/type_resolver.h>
#include <google/protobuf/util/type_resolver_util.h>

#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "micro/codec.hpp"

namespace micro::protobuf {

inline constexpr const char* kTypeUrlPrefix = "type.googleapis.com";

namespace detail {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::internal::WireFormatLite;

inline constexpr int kMaxWireDepth = 64;

inline const char* wire_type_name(int type) {
  switch (type) {
    case WireFormatLite::WIRETYPE_VARINT:
      return "varint";
    case WireFormatLite::WIRETYPE_FIXED64:
      return "fixed64";
    case WireFormatLite::WIRETYPE_LENGTH_DELIMITED:
      return "length-delimited";
    case WireFormatLite::WIRETYPE_START_GROUP:
      return "start-group";
    case WireFormatLite::WIRETYPE_END_GROUP:
      return "end-group";
    case WireFormatLite::WIRETYPE_FIXED32:
      return "fixed32";
    default:
      return "invalid";
  }
}

// The elements of a packed repeated field fill its bytes exactly (protobuf's JSON converter loops
// forever on one that does not).
inline bool packed_elements_fit(std::string_view bytes, int element_wire_type) {
  switch (element_wire_type) {
    case WireFormatLite::WIRETYPE_FIXED32:
      return bytes.size() % 4 == 0;
    case WireFormatLite::WIRETYPE_FIXED64:
      return bytes.size() % 8 == 0;
    case WireFormatLite::WIRETYPE_VARINT: {
      google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                                static_cast<int>(bytes.size()));
      uint64_t value = 0;
      while (static_cast<size_t>(in.CurrentPosition()) < bytes.size())
        if (!in.ReadVarint64(&value)) return false;
      return true;
    }
    default:
      return false;
  }
}

inline Error check_wire(std::string_view bytes, const Descriptor* d, size_t base, int depth) {
  if (depth > kMaxWireDepth)
    return Error::bad_request("protobuf body nests deeper than " + std::to_string(kMaxWireDepth) +
                              " at offset " + std::to_string(base));
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  // Only an error needs the message's name: building it on every call would cost an allocation
  // per nested message of every well-formed body.
  const auto where = [d]() -> std::string { return d != nullptr ? " of " + d->full_name() : ""; };
  while (true) {
    if (static_cast<size_t>(in.CurrentPosition()) == bytes.size()) return {};
    const size_t at = base + static_cast<size_t>(in.CurrentPosition());
    const uint32_t tag = in.ReadTag();
    if (tag == 0 || WireFormatLite::GetTagFieldNumber(tag) == 0)
      return Error::bad_request("malformed protobuf: invalid field tag" + where() + " at offset " +
                                std::to_string(at));
    const int number = WireFormatLite::GetTagFieldNumber(tag);
    const int wire = WireFormatLite::GetTagWireType(tag);
    const FieldDescriptor* field = d != nullptr ? d->FindFieldByNumber(number) : nullptr;
    if (field != nullptr) {
      const int expected = WireFormatLite::WireTypeForFieldType(
          static_cast<WireFormatLite::FieldType>(field->type()));
      const bool packed = field->is_repeated() && field->is_packable() &&
                          wire == WireFormatLite::WIRETYPE_LENGTH_DELIMITED;
      if (wire != expected && !packed)
        return Error::bad_request("malformed protobuf: field '" + field->name() + "' (" +
                                  std::to_string(number) + ")" + where() + " at offset " +
                                  std::to_string(at) + " is " + wire_type_name(wire) +
                                  ", expected " + wire_type_name(expected));
      if (field->type() == FieldDescriptor::TYPE_MESSAGE || packed) {
        uint32_t length = 0;
        if (!in.ReadVarint32(&length) ||
            length > bytes.size() - static_cast<size_t>(in.CurrentPosition()))
          return Error::bad_request("malformed protobuf: field '" + field->name() + "'" + where() +
                                    " at offset " + std::to_string(at) + " is truncated");
        const size_t body = static_cast<size_t>(in.CurrentPosition());
        if (packed) {
          if (!packed_elements_fit(bytes.substr(body, length), expected))
            return Error::bad_request("malformed protobuf: packed field '" + field->name() + "'" +
                                      where() + " at offset " + std::to_string(at) +
                                      " does not hold a whole number of elements");
        } else {
          Error inner =
              check_wire(bytes.substr(body, length), field->message_type(), base + body, depth + 1);
          if (!inner.ok()) return inner;
        }
        in.Skip(static_cast<int>(length));
        continue;
      }
    }
    if (!WireFormatLite::SkipField(&in, tag))
      return Error::bad_request(
          "malformed protobuf: field " +
          (field != nullptr ? "'" + field->name() + "' (" + std::to_string(number) + ")"
                            : std::to_string(number)) +
          where() + " at offset " + std::to_string(at) + " is truncated or malformed");
  }
}

}  // namespace detail

// Checks that `bytes` are well-formed protobuf without building a message: every tag, length and
// nested message (against `type` when given; the framing only for NULL), and that packed repeated
// fields hold whole elements. 400 naming the field and offset of the first fault.
inline Error check_wire(std::string_view bytes, const google::protobuf::Descriptor* type) {
  return detail::check_wire(bytes, type, 0, 0);
}

// A schema parsed into a descriptor pool. Immutable once built; share it freely across threads.
struct ParsedSchema {
  std::string file_descriptor_set;  // the bytes it was built from, to verify cache hits
  std::unique_ptr<google::protobuf::DescriptorPool> pool;
  const google::protobuf::Descriptor* message = nullptr;
  std::unique_ptr<google::protobuf::util::TypeResolver> resolver;
  std::string type_url;  // "type.googleapis.com/greeter.Request"
};

// Builds a ParsedSchema; 400 with what is wrong when the set does not parse or lacks the message.
inline Result<std::shared_ptr<const ParsedSchema>> parse_schema(const SchemaRef& schema) {
  Result<std::shared_ptr<const ParsedSchema>> out;
  google::protobuf::FileDescriptorSet set;
  if (schema.file_descriptor_set.empty() ||
      !set.ParseFromArray(schema.file_descriptor_set.data(),
                          static_cast<int>(schema.file_descriptor_set.size()))) {
    out.error = Error::bad_request("schema for '" + std::string(schema.message_name) +
                                   "': the FileDescriptorSet (" +
                                   std::to_string(schema.file_descriptor_set.size()) +
                                   " bytes) does not parse");
    return out;
  }
  auto parsed = std::make_shared<ParsedSchema>();
  parsed->file_descriptor_set = std::string(schema.file_descriptor_set);
  parsed->pool = std::make_unique<google::protobuf::DescriptorPool>();
  struct Collector : google::protobuf::DescriptorPool::ErrorCollector {
    std::string first;
    void AddError(const std::string& file, const std::string& element, const google::protobuf::Message*,
                  ErrorLocation, const std::string& message) override {
      if (first.empty()) first = file + ": " + element + ": " + message;
    }
  } errors;
  // Files may come in any order: build each after its dependencies.
  std::map<std::string, const google::protobuf::FileDescriptorProto*> pending;
  for (const auto& f : set.file()) pending[f.name()] = &f;
  bool progress = true;
  while (!pending.empty() && progress) {
    progress = false;
    for (auto it = pending.begin(); it != pending.end();) {
      bool ready = true;
      for (const auto& dep : it->second->dependency())
        if (pending.count(dep) != 0) ready = false;
      if (!ready) {
        ++it;
        continue;
      }
      if (parsed->pool->BuildFileCollectingErrors(*it->second, &errors) == nullptr) {
        out.error = Error::bad_request("schema for '" + std::string(schema.message_name) +
                                       "': " + errors.first);
        return out;
      }
      it = pending.erase(it);
      progress = true;
    }
  }
  if (!pending.empty()) {
    out.error = Error::bad_request("schema for '" + std::string(schema.message_name) + "': " +
                                   pending.begin()->first + " imports a file the set lacks");
    return out;
  }
  parsed->message = parsed->pool->FindMessageTypeByName(std::string(schema.message_name));
  if (parsed->message == nullptr) {
    out.error = Error::bad_request("schema: no message '" + std::string(schema.message_name) +
                                   "' in the FileDescriptorSet");
    return out;
  }
  parsed->resolver.reset(google::protobuf::util::NewTypeResolverForDescriptorPool(
      kTypeUrlPrefix, parsed->pool.get()));
  parsed->type_url = std::string(kTypeUrlPrefix) + "/" + parsed->message->full_name();
  out.value = std::move(parsed);
  return out;
}

// Parsed schemas by identity. Generated code passes the same static bytes on every call, so a hit
// costs a map lookup and a memcmp of the set (which guards against reused addresses).
class SchemaCache {
 public:
  explicit SchemaCache(size_t capacity = 256) : capacity_(capacity) {}

  Result<std::shared_ptr<const ParsedSchema>> get(const SchemaRef& schema) {
    const KeyView view{schema.file_descriptor_set.data(), schema.file_descriptor_set.size(),
                       schema.message_name};
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = entries_.find(view);  // no key built: this runs for every message
      if (it != entries_.end() && it->second->file_descriptor_set == schema.file_descriptor_set)
        return {Error{}, it->second};
    }
    auto parsed = parse_schema(schema);
    if (!parsed.ok()) return parsed;
    std::lock_guard<std::mutex> lock(mutex_);
    if (entries_.size() >= capacity_) entries_.clear();  // bounded: a flood of schemas can't grow it
    entries_[Key{view.data, view.size, std::string(view.name)}] = parsed.value;
    return parsed;
  }

 private:
  struct Key {
    const char* data;
    size_t size;
    std::string name;
  };
  struct KeyView {
    const char* data;
    size_t size;
    std::string_view name;
  };
  struct Less {
    using is_transparent = void;
    template <class A, class B>
    bool operator()(const A& a, const B& b) const {
      if (a.data != b.data) return std::less<const char*>()(a.data, b.data);
      if (a.size != b.size) return a.size < b.size;
      return std::string_view(a.name) < std::string_view(b.name);
    }
  };
  const size_t capacity_;
  std::mutex mutex_;
  std::map<Key, std::shared_ptr<const ParsedSchema>, Less> entries_;
};

}  // namespace micro::protobuf
