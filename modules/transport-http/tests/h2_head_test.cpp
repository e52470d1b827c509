// H2Head (h2_head.hpp): a received HTTP/2 head kept flat reads the same as the Message map it
// replaces, whether as a C list or as a Message.
#include "h2_head.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>

namespace {

using micro::transport_http::H2Head;

std::map<std::string, std::string> as_c_list(const H2Head& head, std::string* body = nullptr,
                                             std::vector<std::string>* order = nullptr) {
  std::map<std::string, std::string> out;
  head.with_view("the body", [&](const micro_message_t& m) {
    for (size_t i = 0; i < m.header.count; ++i) {
      const std::string key(micro::to_view(m.header.items[i].key));
      EXPECT_TRUE(out.emplace(key, std::string(micro::to_view(m.header.items[i].value))).second)
          << "repeated key " << key;
      if (order != nullptr) order->push_back(key);
    }
    if (body != nullptr) *body = std::string(micro::to_view(m.body));
  });
  return out;
}

TEST(H2Head, RepeatedNamesJoinAsAMessageMapWouldHoldThem) {
  H2Head head;
  head.add(":path", "/Echo.Call");
  head.add("x-twice", "a");
  head.add("content-type", "application/json");
  head.add("x-twice", "b");
  head.add("x-twice", "");        // an empty repeat adds nothing
  head.add("x-empty-first", "");  // an empty first value takes the next one
  head.add("x-empty-first", "v");
  const std::map<std::string, std::string> expected = {{":path", "/Echo.Call"},
                                                       {"content-type", "application/json"},
                                                       {"x-empty-first", "v"},
                                                       {"x-twice", "a, b"}};
  std::string body;
  std::vector<std::string> order;
  EXPECT_EQ(as_c_list(head, &body, &order), expected);
  EXPECT_EQ(body, "the body");
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end())) << "the C list is sorted by name";
  const micro::Message message = head.to_message("payload");
  const std::map<std::string, std::string> got(message.header.begin(), message.header.end());
  EXPECT_EQ(got, expected);
  EXPECT_EQ(message.body, "payload");
  EXPECT_EQ(head.find("x-twice"), std::optional<std::string_view>("a, b"));
  EXPECT_EQ(head.find("x-absent"), std::nullopt);
}

TEST(H2Head, SetReplacesAndClearEmptiesForTheNextExchange) {
  H2Head head;
  head.add("micro-transport-protocol", "forged by the peer");
  head.set("micro-transport-protocol", "h2c");
  head.set("x-new", "1");
  EXPECT_EQ(as_c_list(head), (std::map<std::string, std::string>{
                                 {"micro-transport-protocol", "h2c"}, {"x-new", "1"}}));
  head.clear();
  EXPECT_TRUE(head.empty());
  EXPECT_TRUE(as_c_list(head).empty());
  head.add(":status", "200");
  EXPECT_EQ(as_c_list(head), (std::map<std::string, std::string>{{":status", "200"}}));
}

TEST(H2Head, MoreFieldsThanTheStackListHoldsAllArrive) {
  H2Head head;
  std::map<std::string, std::string> expected;
  for (int i = 0; i < 100; ++i) {
    const std::string name = "x-field-" + std::to_string(99 - i);
    head.add(name, std::to_string(i));
    expected[name] = std::to_string(i);
  }
  std::vector<std::string> order;
  EXPECT_EQ(as_c_list(head, nullptr, &order), expected);
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
}

}  // namespace
