// C++ values for go-micro's data types, and the conversions to and from their C views.
#pragma once

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "micro/error.hpp"
#include "micro/types.h"

namespace micro {

using Metadata = std::map<std::string, std::string>;

struct Node {
  std::string id;
  std::string address;  // host:port
  Metadata metadata;
  bool operator==(const Node& o) const {
    return id == o.id && address == o.address && metadata == o.metadata;
  }
};

struct Endpoint {
  std::string name;      // "Greeter.Hello"
  std::string request;   // full message name
  std::string response;  // full message name
  Metadata metadata;
  bool operator==(const Endpoint& o) const {
    return name == o.name && request == o.request && response == o.response &&
           metadata == o.metadata;
  }
};

struct Service {
  std::string name;
  std::string version;
  Metadata metadata;
  std::vector<Endpoint> endpoints;
  std::vector<Node> nodes;
  bool operator==(const Service& o) const {
    return name == o.name && version == o.version && metadata == o.metadata &&
           endpoints == o.endpoints && nodes == o.nodes;
  }
};

struct Message {
  Metadata header;
  std::string body;
};

// The value of header `key` (received headers are lower case), or "" when absent.
inline std::string header_value(const Message& message, const std::string& key) {
  auto it = message.header.find(key);
  return it == message.header.end() ? std::string() : it->second;
}

// The same without a copy: a view of the value, valid while `message` is unchanged.
inline std::string_view header_view(const Message& message, const std::string& key) {
  auto it = message.header.find(key);
  return it == message.header.end() ? std::string_view() : std::string_view(it->second);
}

// `bytes` random bytes as lower-case hex: ids for nodes and calls.
inline std::string random_hex(size_t bytes) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * bytes);
  for (size_t i = 0; i < bytes; ++i) {
    const auto b = static_cast<unsigned>(rng() & 0xff);
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

inline micro_bytes_t to_c_bytes(std::string_view s) noexcept {
  return micro_bytes_t{reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
inline std::string_view to_view(micro_bytes_t b) noexcept {
  return b.data == nullptr ? std::string_view{}
                           : std::string_view{reinterpret_cast<const char*>(b.data), b.size};
}

inline Metadata from_c(micro_metadata_t m) {
  Metadata out;
  for (size_t i = 0; i < m.count && m.items != nullptr; ++i) {
    const std::string_view key = to_view(m.items[i].key);
    const std::string_view value = to_view(m.items[i].value);
    // A view of a Metadata (MetadataView) lists its keys in order: each goes at the end, placed
    // by one comparison instead of a search. Any other order is inserted in place (a repeated
    // key: the last value wins).
    if (out.empty() || std::prev(out.end())->first < key)
      out.emplace_hint(out.end(), std::piecewise_construct, std::forward_as_tuple(key),
                       std::forward_as_tuple(value));
    else
      out.insert_or_assign(std::string(key), std::string(value));
  }
  return out;
}

inline Node from_c(const micro_node_t* node) {
  const micro_node_t n = read_struct(node);
  return Node{std::string(to_view(n.id)), std::string(to_view(n.address)), from_c(n.metadata)};
}

inline Endpoint from_c(const micro_endpoint_t* endpoint) {
  const micro_endpoint_t e = read_struct(endpoint);
  return Endpoint{std::string(to_view(e.name)), std::string(to_view(e.request)),
                  std::string(to_view(e.response)), from_c(e.metadata)};
}

inline Service from_c(const micro_service_t* service) {
  const micro_service_t s = read_struct(service);
  Service out{std::string(to_view(s.name)), std::string(to_view(s.version)), from_c(s.metadata),
              {}, {}};
  for (size_t i = 0; i < s.endpoint_count && s.endpoints != nullptr; ++i)
    if (s.endpoints[i] != nullptr) out.endpoints.push_back(from_c(s.endpoints[i]));
  for (size_t i = 0; i < s.node_count && s.nodes != nullptr; ++i)
    if (s.nodes[i] != nullptr) out.nodes.push_back(from_c(s.nodes[i]));
  return out;
}

inline Message from_c(const micro_message_t* message) {
  const micro_message_t m = read_struct(message);
  return Message{from_c(m.header), std::string(to_view(m.body))};
}

// The entry of `key` in a C list (exact match; the last of a repeated key wins, as from_c reads
// the list), or NULL when absent: a lookup in a received view, with no Metadata built for it.
inline const micro_kv_t* find_item(micro_metadata_t list, std::string_view key) noexcept {
  if (list.items == nullptr) return nullptr;
  for (size_t i = list.count; i-- > 0;)
    if (to_view(list.items[i].key) == key) return &list.items[i];
  return nullptr;
}
// Its value, or "" when absent (as header_value).
inline std::string_view find_value(micro_metadata_t list, std::string_view key) noexcept {
  const micro_kv_t* item = find_item(list, key);
  return item == nullptr ? std::string_view() : to_view(item->value);
}

// A C list of key/value views being built (request or response headers), borrowing the strings
// it is given: up to 8 entries on the stack, more on the heap. Keep the strings alive and the
// list unmoved while c() is used.
class KvList {
 public:
  KvList() = default;
  KvList(const KvList&) = delete;
  KvList& operator=(const KvList&) = delete;

  void add(std::string_view key, std::string_view value) {
    const micro_kv_t item{to_c(key), to_c(value)};
    if (more_.empty() && size_ < kFixed) {
      fixed_[size_++] = item;
      return;
    }
    if (more_.empty()) more_.assign(fixed_, fixed_ + size_);
    more_.push_back(item);
    ++size_;
  }
  // Orders the list as a MetadataView of a map lists it: strictly ascending keys, of a repeated
  // key only the last added (as from_c reads a list).
  void sort_unique() {
    micro_kv_t* items = data();
    const auto key_less = [](const micro_kv_t& a, const micro_kv_t& b) {
      return to_view(a.key) < to_view(b.key);
    };
    // Stable, so the last of a repeated key stays last. Header lists are short: an insertion
    // sort needs no buffer (std::stable_sort allocates one).
    if (size_ <= 32) {
      for (size_t i = 1; i < size_; ++i)
        for (size_t j = i; j > 0 && key_less(items[j], items[j - 1]); --j)
          std::swap(items[j], items[j - 1]);
    } else {
      std::stable_sort(items, items + size_, key_less);
    }
    size_t kept = 0;
    for (size_t i = 0; i < size_; ++i) {
      if (i + 1 < size_ && to_view(items[i].key) == to_view(items[i + 1].key)) continue;
      items[kept++] = items[i];
    }
    size_ = kept;
    if (!more_.empty()) more_.resize(kept);
  }
  size_t size() const noexcept { return size_; }
  micro_metadata_t c() const noexcept {
    return {more_.empty() ? fixed_ : more_.data(), size_};
  }

 private:
  static constexpr size_t kFixed = 8;
  micro_kv_t* data() noexcept { return more_.empty() ? fixed_ : more_.data(); }
  micro_kv_t fixed_[kFixed];
  std::vector<micro_kv_t> more_;
  size_t size_ = 0;
};

// A C view of metadata, borrowing the map's strings. Keep the map alive and unchanged while the
// view is used. Moving the view keeps c() valid (the pairs live on the heap).
class MetadataView {
 public:
  explicit MetadataView(const Metadata& metadata) {
    items_.reserve(metadata.size());
    for (const auto& [key, value] : metadata) items_.push_back({to_c(key), to_c(value)});
  }
  MetadataView(MetadataView&&) noexcept = default;
  MetadataView& operator=(MetadataView&&) noexcept = default;
  micro_metadata_t c() const noexcept { return {items_.data(), items_.size()}; }

 private:
  std::vector<micro_kv_t> items_;
};

// A C view of a Service (borrowing its strings). Same rules as MetadataView.
class ServiceView {
 public:
  explicit ServiceView(const Service& service) : metadata_(service.metadata) {
    for (const auto& e : service.endpoints) endpoint_meta_.emplace_back(e.metadata);
    for (const auto& n : service.nodes) node_meta_.emplace_back(n.metadata);
    endpoints_.reserve(service.endpoints.size());
    for (size_t i = 0; i < service.endpoints.size(); ++i) {
      const auto& e = service.endpoints[i];
      endpoints_.push_back({sizeof(micro_endpoint_t), to_c(e.name), to_c(e.request),
                            to_c(e.response), endpoint_meta_[i].c()});
    }
    nodes_.reserve(service.nodes.size());
    for (size_t i = 0; i < service.nodes.size(); ++i) {
      const auto& n = service.nodes[i];
      nodes_.push_back({sizeof(micro_node_t), to_c(n.id), to_c(n.address), node_meta_[i].c()});
    }
    for (const auto& e : endpoints_) endpoint_ptrs_.push_back(&e);
    for (const auto& n : nodes_) node_ptrs_.push_back(&n);
    c_ = {sizeof(micro_service_t), to_c(service.name), to_c(service.version), metadata_.c(),
          endpoint_ptrs_.data(), endpoint_ptrs_.size(), node_ptrs_.data(), node_ptrs_.size()};
  }
  ServiceView(const ServiceView&) = delete;
  ServiceView& operator=(const ServiceView&) = delete;
  const micro_service_t* c() const noexcept { return &c_; }

 private:
  MetadataView metadata_;
  std::vector<MetadataView> endpoint_meta_;
  std::vector<MetadataView> node_meta_;
  std::vector<micro_endpoint_t> endpoints_;
  std::vector<micro_node_t> nodes_;
  std::vector<const micro_endpoint_t*> endpoint_ptrs_;
  std::vector<const micro_node_t*> node_ptrs_;
  micro_service_t c_{};
};

// C views of many services at once.
class ServiceListView {
 public:
  explicit ServiceListView(const std::vector<Service>& services) {
    views_.reserve(services.size());
    for (const auto& s : services) views_.push_back(std::make_unique<ServiceView>(s));
    for (const auto& v : views_) ptrs_.push_back(v->c());
  }
  const micro_service_t* const* data() const noexcept { return ptrs_.data(); }
  size_t size() const noexcept { return ptrs_.size(); }

 private:
  std::vector<std::unique_ptr<ServiceView>> views_;
  std::vector<const micro_service_t*> ptrs_;
};

// A C view of a Message (borrowing its strings). Same rules as MetadataView.
class MessageView {
 public:
  explicit MessageView(const Message& message)
      : header_(message.header),
        c_{sizeof(micro_message_t), header_.c(), to_c_bytes(message.body)} {}
  MessageView(const MessageView&) = delete;
  MessageView& operator=(const MessageView&) = delete;
  const micro_message_t* c() const noexcept { return &c_; }

 private:
  MetadataView header_;
  micro_message_t c_;
};

}  // namespace micro
