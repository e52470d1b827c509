#include "node_file.hpp"

#include <sstream>

// toml++ 3.3.0, compiled into this module (TOML_HEADER_ONLY), parses files anyone may write into
// the registry tree, so no input may abort or reach undefined behaviour. Two upstream bugs are
// reachable from input (see tests/fuzz/CMakeLists.txt):
//  - marzer/tomlplusplus#294: "[=]" breaks an asserted precondition of parse_key(); past it the
//    parser reports a clean syntax error. So assertions are off, and so are the assumptions that
//    an NDEBUG clang build makes of them.
//  - marzer/tomlplusplus#295: a non-ASCII character where whitespace may stand reaches
//    TOML_UNREACHABLE. Node files are ASCII only (encode escapes everything else), and
//    decode_node_file refuses any other byte before toml++ sees it.
#define TOML_ASSERT(expr) static_assert(true)
#include <toml++/impl/preprocessor.h>
#undef TOML_ASSERT_ASSUME
#define TOML_ASSERT_ASSUME(expr) static_assert(true)
#include <toml++/toml.h>

namespace micro::registry_file {
namespace {

// The layout version of a node file; a reader skips files of a later format.
constexpr int64_t kFormat = 1;

toml::table metadata_table(const Metadata& metadata) {
  toml::table out;
  for (const auto& [key, value] : metadata) out.insert_or_assign(key, value);
  out.is_inline(true);
  return out;
}

std::optional<std::string> string_at(const toml::table& table, std::string_view key,
                                     std::optional<std::string> if_absent = std::nullopt) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return if_absent;
  if (const auto* s = node->as_string()) return s->get();
  return std::nullopt;
}

// Absent: empty. Present: a table of strings, or nothing (an error).
std::optional<Metadata> metadata_at(const toml::table& table, std::string_view key) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return Metadata{};
  const toml::table* t = node->as_table();
  if (t == nullptr) return std::nullopt;
  Metadata out;
  for (const auto& [k, v] : *t) {
    const auto* s = v.as_string();
    if (s == nullptr) return std::nullopt;
    out.emplace(std::string(k.str()), s->get());
  }
  return out;
}

std::optional<NodeFile> fail(std::string* why, std::string reason) {
  if (why != nullptr) *why = std::move(reason);
  return std::nullopt;
}

}  // namespace

Result<std::string> encode_node_file(const NodeFile& file) {
  Result<std::string> out;
  const Service& s = file.service;
  if (s.nodes.size() != 1) {
    out.error = Error::internal("a node file holds exactly one node");
    return out;
  }
  toml::table doc;
  doc.insert_or_assign("format", kFormat);
  doc.insert_or_assign("name", s.name);
  doc.insert_or_assign("version", s.version);
  doc.insert_or_assign("expires_unix_ms", file.expires_unix_ms);
  doc.insert_or_assign("metadata", metadata_table(s.metadata));
  toml::table node;
  node.insert_or_assign("id", s.nodes[0].id);
  node.insert_or_assign("address", s.nodes[0].address);
  node.insert_or_assign("metadata", metadata_table(s.nodes[0].metadata));
  doc.insert_or_assign("node", std::move(node));
  toml::array endpoints;
  for (const auto& e : s.endpoints) {
    toml::table endpoint;
    endpoint.insert_or_assign("name", e.name);
    endpoint.insert_or_assign("request", e.request);
    endpoint.insert_or_assign("response", e.response);
    endpoint.insert_or_assign("metadata", metadata_table(e.metadata));
    endpoints.push_back(std::move(endpoint));
  }
  doc.insert_or_assign("endpoints", std::move(endpoints));

  constexpr auto ascii_only =
      toml::toml_formatter::default_flags & ~toml::format_flags::allow_unicode_strings;
  std::ostringstream text;
  text << "# registry-file: one node of one service version; replaced whole, never edited\n"
       << toml::toml_formatter(doc, ascii_only) << "\n";
  out.value = text.str();

  // What cannot be read back identically (invalid UTF-8, say) is refused rather than mangled.
  std::string why;
  const auto back = decode_node_file(out.value, &why);
  if (!back || !(back->service == s) || back->expires_unix_ms != file.expires_unix_ms) {
    out.error = Error::bad_request("service '" + s.name + "' node '" + s.nodes[0].id +
                                   "' cannot be stored in a node file (" +
                                   (back ? std::string("it does not read back the same") : why) +
                                   "): are all names, metadata and endpoints valid UTF-8?");
    out.value.clear();
  }
  return out;
}

std::optional<NodeFile> decode_node_file(std::string_view text, std::string* why) {
  for (size_t i = 0; i < text.size(); ++i)
    if (static_cast<unsigned char>(text[i]) >= 0x80)
      return fail(why, "byte " + std::to_string(i) + " is not ASCII (node files are ASCII)");
  toml::table doc;
  try {
    doc = toml::parse(text);
  } catch (const toml::parse_error& e) {
    return fail(
        why, "line " + std::to_string(e.source().begin.line) + ": " + std::string(e.description()));
  }
  const auto format = doc["format"].value_exact<int64_t>();
  if (doc.contains("format") && !format) return fail(why, "'format' is not an integer");
  if (format && *format != kFormat)
    return fail(why, "format " + std::to_string(*format) + " (this module reads format " +
                         std::to_string(kFormat) + "): written by a newer registry-file?");

  NodeFile out;
  Service& s = out.service;
  auto name = string_at(doc, "name");
  if (!name || name->empty()) return fail(why, "no service 'name'");
  s.name = std::move(*name);
  auto version = string_at(doc, "version", std::string());
  if (!version) return fail(why, "'version' is not a string");
  s.version = std::move(*version);
  if (doc.contains("expires_unix_ms")) {
    const auto expires = doc["expires_unix_ms"].value_exact<int64_t>();
    if (!expires || *expires < 0) return fail(why, "'expires_unix_ms' is not an integer >= 0");
    out.expires_unix_ms = *expires;
  }
  auto metadata = metadata_at(doc, "metadata");
  if (!metadata) return fail(why, "'metadata' is not a table of strings");
  s.metadata = std::move(*metadata);

  const toml::table* node = doc["node"].as_table();
  if (node == nullptr) return fail(why, "no [node] table");
  auto id = string_at(*node, "id");
  auto address = string_at(*node, "address", std::string());
  auto node_metadata = metadata_at(*node, "metadata");
  if (!id) return fail(why, "no node 'id'");
  if (!address) return fail(why, "node 'address' is not a string");
  if (!node_metadata) return fail(why, "node 'metadata' is not a table of strings");
  s.nodes.push_back({std::move(*id), std::move(*address), std::move(*node_metadata)});

  if (const toml::node* endpoints = doc.get("endpoints")) {
    const toml::array* list = endpoints->as_array();
    if (list == nullptr) return fail(why, "'endpoints' is not an array of tables");
    for (const toml::node& item : *list) {
      const toml::table* e = item.as_table();
      if (e == nullptr) return fail(why, "'endpoints' is not an array of tables");
      auto e_name = string_at(*e, "name");
      auto request = string_at(*e, "request", std::string());
      auto response = string_at(*e, "response", std::string());
      auto e_metadata = metadata_at(*e, "metadata");
      if (!e_name || !request || !response || !e_metadata)
        return fail(why, "an endpoint lacks a 'name' or has a value of the wrong type");
      s.endpoints.push_back(
          {std::move(*e_name), std::move(*request), std::move(*response), std::move(*e_metadata)});
    }
  }
  return out;
}

}  // namespace micro::registry_file
