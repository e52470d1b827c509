// Codec, C++ side: CodecPlugin (implement it in a module) and Codec (call one).
#pragma once

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "micro/caller.hpp"
#include "micro/codec.h"
#include "micro/plugin.hpp"

namespace micro {

// A message's schema (see micro_schema_t): a serialized google.protobuf.FileDescriptorSet and the
// full name of the message in it.
struct Schema {
  std::string file_descriptor_set;
  std::string message_name;  // "greeter.Request"
};

// A borrowed schema: views into a Schema or a micro_schema_t, valid only during the call that
// receives it. to_schema() copies it for keeping.
struct SchemaRef {
  std::string_view file_descriptor_set;
  std::string_view message_name;

  SchemaRef() = default;
  SchemaRef(std::string_view fds, std::string_view name) noexcept
      : file_descriptor_set(fds), message_name(name) {}
  SchemaRef(const Schema& schema) noexcept  // NOLINT(google-explicit-constructor): a view of it
      : file_descriptor_set(schema.file_descriptor_set), message_name(schema.message_name) {}
  Schema to_schema() const {
    return Schema{std::string(file_descriptor_set), std::string(message_name)};
  }
};

// The C view of a schema, borrowing its strings: c() is NULL for a NULL schema. Keep the schema
// alive and unchanged while the view is used.
class SchemaView {
 public:
  explicit SchemaView(const Schema* schema) noexcept {
    if (schema != nullptr) set(*schema);
  }
  explicit SchemaView(const SchemaRef* schema) noexcept {
    if (schema != nullptr) set(*schema);
  }
  const micro_schema_t* c() const noexcept { return present_ ? &c_ : nullptr; }

 private:
  void set(SchemaRef schema) noexcept {
    c_ = {sizeof(micro_schema_t), to_c_bytes(schema.file_descriptor_set),
          to_c(schema.message_name)};
    present_ = true;
  }
  micro_schema_t c_{};
  bool present_ = false;
};

// Copies a C schema for keeping; nullptr for NULL.
inline std::shared_ptr<const Schema> from_c(const micro_schema_t* schema) {
  if (schema == nullptr) return nullptr;
  const micro_schema_t s = read_struct(schema);
  return std::make_shared<const Schema>(
      Schema{std::string(to_view(s.file_descriptor_set)), std::string(to_view(s.message_name))});
}

// ---- module side ---------------------------------------------------------------------------

namespace detail {
struct CodecAdapter;
}

// Implement this in a codec module. decode and encode may be called from many threads at once.
class CodecPlugin : public PluginBase {
 public:
  using KindBase = CodecPlugin;
  static constexpr micro_kind_t kind = MICRO_KIND_CODEC;

  // The content types this instance handles ("application/json"). Called once, on first use; the
  // SDK keeps the result for the instance's lifetime.
  virtual std::vector<std::string> content_types() = 0;
  // Wire bytes of `content_type` -> canonical bytes, appended to `out`. `schema` is NULL for an
  // untyped message. Fails with a 400/413/415-style error naming the field or offset.
  virtual Error decode(std::string_view content_type, std::string_view wire,
                       const SchemaRef* schema, std::string& out) = 0;
  // Canonical bytes -> wire bytes of `content_type`, appended to `out`. Same rules as decode.
  virtual Error encode(std::string_view content_type, std::string_view canonical,
                       const SchemaRef* schema, std::string& out) = 0;

  static const void* c_vtable() noexcept;

 private:
  friend struct detail::CodecAdapter;
  // content_types(), kept where the C array can point into it.
  std::mutex types_mutex_;
  bool types_ready_ = false;
  std::vector<std::string> types_;
  std::vector<micro_str_t> type_views_;
  // The output buffer decode/encode write into, kept between calls so that a steady stream of
  // calls neither allocates nor regrows one. One call holds it at a time (spare_output_busy_);
  // a call that finds it held uses a buffer of its own.
  std::atomic_flag spare_output_busy_ = ATOMIC_FLAG_INIT;
  std::string spare_output_;
};

namespace detail {

// Appends `bytes` to a caller's sink, through append or else reserve.
inline Error write_to_sink(const micro_sink_t& sink, std::string_view bytes) {
  if (bytes.empty()) return Error{};
  if (sink.append != nullptr) {
    sink.append(sink.ctx, bytes.data(), bytes.size());
    return Error{};
  }
  if (sink.reserve != nullptr) {
    uint8_t* to = sink.reserve(sink.ctx, bytes.size());
    if (to == nullptr) {
      return Error::internal("the caller's output buffer cannot grow by " +
                             std::to_string(bytes.size()) + " bytes");
    }
    std::memcpy(to, bytes.data(), bytes.size());
    return Error{};
  }
  return Error::bad_request("the output sink has neither append nor reserve");
}

// Converts the C calls on micro_codec_vtable_t into CodecPlugin's virtuals.
struct CodecAdapter {
  using Method = Error (CodecPlugin::*)(std::string_view, std::string_view, const SchemaRef*,
                                        std::string&);

  static CodecPlugin* as(void* self) noexcept { return static_cast<CodecPlugin*>(self); }

  static void destroy(void* self) noexcept {
    (void)guarded([&] { delete as(self); });
  }

  static void content_types(void* self, const micro_str_t** out_types, size_t* out_count) noexcept {
    if (out_types == nullptr || out_count == nullptr) return;
    *out_types = nullptr;
    *out_count = 0;
    CodecPlugin* codec = as(self);
    (void)guarded([&] {
      std::lock_guard<std::mutex> lock(codec->types_mutex_);
      if (!codec->types_ready_) {
        std::vector<std::string> types = codec->content_types();
        std::vector<micro_str_t> views;
        views.reserve(types.size());
        for (const auto& t : types) views.push_back(to_c(t));  // a moved vector keeps its elements
        codec->types_ = std::move(types);
        codec->type_views_ = std::move(views);
        codec->types_ready_ = true;
      }
      *out_types = codec->type_views_.data();
      *out_count = codec->type_views_.size();
    });
  }

  // A kept buffer larger than this is freed after the call: one big message must not pin memory.
  static constexpr size_t kMaxKeptOutput = 64 * 1024;

  // The plugin's spare output buffer, emptied, if no other call holds it; released on scope exit.
  class OutputBuffer {
   public:
    explicit OutputBuffer(CodecPlugin* codec) noexcept
        : codec_(codec->spare_output_busy_.test_and_set(std::memory_order_acquire) ? nullptr
                                                                                   : codec) {
      if (codec_ != nullptr) codec_->spare_output_.clear();
    }
    ~OutputBuffer() {
      if (codec_ == nullptr) return;
      if (codec_->spare_output_.capacity() > kMaxKeptOutput)
        std::string().swap(codec_->spare_output_);
      codec_->spare_output_busy_.clear(std::memory_order_release);
    }
    OutputBuffer(const OutputBuffer&) = delete;
    OutputBuffer& operator=(const OutputBuffer&) = delete;
    std::string& get() noexcept { return codec_ != nullptr ? codec_->spare_output_ : own_; }

   private:
    CodecPlugin* codec_;
    std::string own_;
  };

  // The plugin writes into a std::string, which is then appended to the sink: one copy of the
  // output, the price of a C++ type the plugin can fill freely. The string is the plugin's kept
  // buffer, so in the steady state a call allocates nothing.
  static micro_error_t* transcode(void* self, Method method, micro_str_t content_type,
                                  micro_bytes_t input, const micro_schema_t* schema,
                                  micro_sink_t* out) noexcept {
    if (out == nullptr) return Error::bad_request("codec: the output sink is NULL").to_owned_c();
    Error result;
    Error thrown = guarded([&] {
      const micro_sink_t sink = read_struct(out);
      const micro_schema_t s = read_struct(schema);
      const SchemaRef ref(to_view(s.file_descriptor_set), to_view(s.message_name));
      OutputBuffer buffer(as(self));
      result = (as(self)->*method)(to_view(content_type), to_view(input),
                                   schema != nullptr ? &ref : nullptr, buffer.get());
      if (result.ok()) result = write_to_sink(sink, buffer.get());
    });
    return (thrown.ok() ? result : thrown).to_owned_c();
  }

  static micro_error_t* decode(void* self, micro_str_t content_type, micro_bytes_t wire,
                               const micro_schema_t* schema, micro_sink_t* out) noexcept {
    return transcode(self, &CodecPlugin::decode, content_type, wire, schema, out);
  }
  static micro_error_t* encode(void* self, micro_str_t content_type, micro_bytes_t canonical,
                               const micro_schema_t* schema, micro_sink_t* out) noexcept {
    return transcode(self, &CodecPlugin::encode, content_type, canonical, schema, out);
  }
};

}  // namespace detail

inline const void* CodecPlugin::c_vtable() noexcept {
  static const micro_codec_vtable_t vtable = {
      sizeof(micro_codec_vtable_t), &detail::CodecAdapter::destroy,
      &detail::CodecAdapter::content_types, &detail::CodecAdapter::decode,
      &detail::CodecAdapter::encode};
  return &vtable;
}

// ---- caller side ---------------------------------------------------------------------------

namespace detail {

// A micro_sink_t that appends to a std::string: the callee writes straight into the caller's
// string, with no intermediate buffer. A growth failure is remembered and reported after the call.
class StringSink {
 public:
  explicit StringSink(std::string& out) noexcept
      : out_(out), c_{sizeof(micro_sink_t), this, &append, &reserve} {}
  StringSink(const StringSink&) = delete;
  StringSink& operator=(const StringSink&) = delete;

  micro_sink_t* c() noexcept { return &c_; }
  bool failed() const noexcept { return failed_; }

 private:
  static void append(void* ctx, const void* data, size_t size) noexcept {
    auto* self = static_cast<StringSink*>(ctx);
    if (size == 0 || self->failed_) return;
    try {
      self->out_.append(static_cast<const char*>(data), size);
    } catch (...) {
      self->failed_ = true;
    }
  }
  // Grows the string (geometrically, as std::string does) and returns the new tail.
  static uint8_t* reserve(void* ctx, size_t size) noexcept {
    auto* self = static_cast<StringSink*>(ctx);
    if (self->failed_) return nullptr;
    try {
      const size_t old_size = self->out_.size();
      self->out_.resize(old_size + size);
      return reinterpret_cast<uint8_t*>(&self->out_[old_size]);
    } catch (...) {
      self->failed_ = true;
      return nullptr;
    }
  }

  std::string& out_;
  micro_sink_t c_;
  bool failed_ = false;
};

}  // namespace detail

// Calls a codec instance through its C vtable. Does not own the instance; copyable. Every method
// may be called from many threads at once.
class Codec {
 public:
  Codec() = default;
  explicit Codec(micro_codec_t handle) noexcept
      : vtable_(read_struct(handle.vtable)), self_(handle.self) {}

  bool valid() const noexcept { return self_ != nullptr; }

  // The content types the instance handles; the views live as long as the instance.
  std::vector<std::string_view> content_types() const {
    std::vector<std::string_view> out;
    if (!vtable_.content_types) return out;
    const micro_str_t* types = nullptr;
    size_t count = 0;
    vtable_.content_types(self_, &types, &count);
    for (size_t i = 0; i < count && types != nullptr; ++i) out.push_back(to_view(types[i]));
    return out;
  }

  // Wire bytes of `content_type` -> canonical bytes, appended to `out`. `schema` is NULL for an
  // untyped message. On failure `out` is left as it was.
  Error decode(std::string_view content_type, std::string_view wire, const Schema* schema,
               std::string& out) const {
    return transcode(vtable_.decode, "decode", content_type, wire, schema, out);
  }
  Result<std::string> decode(std::string_view content_type, std::string_view wire,
                             const Schema* schema = nullptr) const {
    Result<std::string> out;
    out.error = decode(content_type, wire, schema, out.value);
    return out;
  }

  // Canonical bytes -> wire bytes of `content_type`, appended to `out`. Same rules as decode.
  Error encode(std::string_view content_type, std::string_view canonical, const Schema* schema,
               std::string& out) const {
    return transcode(vtable_.encode, "encode", content_type, canonical, schema, out);
  }
  Result<std::string> encode(std::string_view content_type, std::string_view canonical,
                             const Schema* schema = nullptr) const {
    Result<std::string> out;
    out.error = encode(content_type, canonical, schema, out.value);
    return out;
  }

 private:
  using Transcode = micro_error_t* (*)(void*, micro_str_t, micro_bytes_t, const micro_schema_t*,
                                       micro_sink_t*);

  Error transcode(Transcode fn, const char* what, std::string_view content_type,
                  std::string_view input, const Schema* schema, std::string& out) const {
    if (fn == nullptr) return detail::missing("codec", what);
    const size_t original_size = out.size();
    detail::StringSink sink(out);
    const SchemaView schema_view(schema);
    Error error =
        take_error(fn(self_, to_c(content_type), to_c_bytes(input), schema_view.c(), sink.c()));
    if (error.ok() && sink.failed()) {
      error = Error::internal(std::string("out of memory growing the output of codec ") + what);
    }
    if (!error.ok()) out.resize(original_size);
    return error;
  }

  micro_codec_vtable_t vtable_{};
  void* self_ = nullptr;
};

}  // namespace micro
