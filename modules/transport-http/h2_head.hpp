// A head received over HTTP/2 (HTTP/1.1's is wire.hpp's ReceivedHead), kept flat: names and
// values back to back in one buffer, a repeated name's values joined with ", " (as a Message's
// map holds them). A C recv reads it as a C list sorted by name (as MessageView lists a map),
// built on the stack, with no Message made; a C++ recv gets the Message. Kept by its socket
// across exchanges, so a pooled client socket reuses its buffers. Lookups are linear: a head
// holds at most max_header_bytes / 32 fields (HTTP/2's accounting, enforced by the socket).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "micro/types.hpp"

namespace micro::transport_http {

class H2Head {
 public:
  bool empty() const noexcept { return fields_.empty(); }
  void clear() noexcept {
    bytes_.clear();
    fields_.clear();
  }

  // Adds a field; a name already there gets ", " and the value appended (an empty value adds
  // nothing to a name already there).
  void add(std::string_view name, std::string_view value) {
    if (Field* field = find_field(name)) {
      if (value.empty()) return;
      if (field->value_size == 0) return set_value(*field, value);
      // The joined value goes to the end of the buffer (the old one stays, unused).
      const std::string joined = std::string(view(field->value_at, field->value_size)) + ", ";
      set_value(*field, joined, value);
      return;
    }
    if (fields_.capacity() == 0) {  // a fresh head: room for a usual one, at once
      fields_.reserve(16);
      bytes_.reserve(512);
    }
    Field field{at(), static_cast<uint32_t>(name.size()), 0, 0};
    bytes_.append(name);
    set_value(field, value);
    fields_.push_back(field);
  }
  // Sets a field, replacing what it had.
  void set(std::string_view name, std::string_view value) {
    if (Field* field = find_field(name)) return set_value(*field, value);
    add(name, value);
  }
  std::optional<std::string_view> find(std::string_view name) const {
    for (const Field& f : fields_)
      if (view(f.name_at, f.name_size) == name) return view(f.value_at, f.value_size);
    return std::nullopt;
  }

  // Calls `f(const micro_message_t&)` with the head, sorted by name, and `body`: a view valid
  // during the call.
  template <class F>
  void with_view(std::string_view body, F&& f) const {
    constexpr size_t kOnStack = 32;
    micro_kv_t on_stack[kOnStack];
    std::vector<micro_kv_t> on_heap;
    micro_kv_t* items = on_stack;
    if (fields_.size() > kOnStack) {
      on_heap.resize(fields_.size());
      items = on_heap.data();
    }
    for (size_t i = 0; i < fields_.size(); ++i)
      items[i] = {to_c(view(fields_[i].name_at, fields_[i].name_size)),
                  to_c(view(fields_[i].value_at, fields_[i].value_size))};
    std::sort(items, items + fields_.size(), [](const micro_kv_t& a, const micro_kv_t& b) {
      return to_view(a.key) < to_view(b.key);
    });
    const micro_message_t message{sizeof(micro_message_t), {items, fields_.size()},
                                  to_c_bytes(body)};
    f(message);
  }

  Message to_message(std::string body) const {
    Message m;
    for (const Field& f : fields_)
      m.header.emplace(view(f.name_at, f.name_size), view(f.value_at, f.value_size));
    m.body = std::move(body);
    return m;
  }

 private:
  struct Field {
    uint32_t name_at, name_size, value_at, value_size;
  };

  uint32_t at() const noexcept { return static_cast<uint32_t>(bytes_.size()); }
  std::string_view view(uint32_t from, uint32_t size) const noexcept {
    return std::string_view(bytes_).substr(from, size);
  }
  Field* find_field(std::string_view name) {
    for (Field& f : fields_)
      if (view(f.name_at, f.name_size) == name) return &f;
    return nullptr;
  }
  void set_value(Field& field, std::string_view first, std::string_view second = {}) {
    field.value_at = at();
    bytes_.append(first);
    bytes_.append(second);
    field.value_size = static_cast<uint32_t>(first.size() + second.size());
  }

  std::string bytes_;
  std::vector<Field> fields_;
};

}  // namespace micro::transport_http
