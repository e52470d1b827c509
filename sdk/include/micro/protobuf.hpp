// Protobuf helpers for modules and generated code that work with schemas at run time: a cache
// that turns a micro schema (serialized FileDescriptorSet + message name) into descriptors once.
// Optional: only code that includes this header needs protobuf.
#pragma once

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
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
    const Key key{schema.file_descriptor_set.data(), schema.file_descriptor_set.size(),
                  std::string(schema.message_name)};
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = entries_.find(key);
      if (it != entries_.end() && it->second->file_descriptor_set == schema.file_descriptor_set)
        return {Error{}, it->second};
    }
    auto parsed = parse_schema(schema);
    if (!parsed.ok()) return parsed;
    std::lock_guard<std::mutex> lock(mutex_);
    if (entries_.size() >= capacity_) entries_.clear();  // bounded: a flood of schemas can't grow it
    entries_[key] = parsed.value;
    return parsed;
  }

 private:
  struct Key {
    const char* data;
    size_t size;
    std::string name;
    bool operator<(const Key& o) const {
      if (data != o.data) return std::less<const char*>()(data, o.data);
      if (size != o.size) return size < o.size;
      return name < o.name;
    }
  };
  const size_t capacity_;
  std::mutex mutex_;
  std::map<Key, std::shared_ptr<const ParsedSchema>> entries_;
};

}  // namespace micro::protobuf
