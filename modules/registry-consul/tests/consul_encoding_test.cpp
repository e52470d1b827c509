// registry-consul's encoding on its own: what it writes fits Consul's rules, what it reads comes
// back byte for byte, what it cannot store or read is a clear error, and watch diffs.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <regex>

#include "consul_json.hpp"
#include "watcher.hpp"

using micro::consul::CheckSettings;
using micro::consul::Instance;

namespace {

micro::Service sample() {
  micro::Service s;
  s.name = "grüße svc";
  s.version = "1.0.0-β";
  s.metadata = {{"team", "core"},
                {"key with spaces / and ✓", "value \"quoted\"\n\tand tabs"},
                {"", "empty key"},
                {"empty value", ""}};
  s.endpoints = {{"Z.Last", "a.Req", "a.Resp", {{"stream", "true"}}},
                 {"A.First", "", "", {}},
                 {"M.Middle", "b.Req", "b.Resp", {{"k", std::string(600, 'x')}}}};
  s.nodes = {{"node/1 ✓", "127.0.0.1:8080", {{"zone", "eu-1"}, {"ünïcode", "ÿ"}}}};
  return s;
}

google::protobuf::Struct parse_object(const std::string& json) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &s).ok()) << json;
  return s;
}

// What the agent answers on /v1/health/service/NAME for one registration body.
std::string health_answer_for(const std::string& registration, const std::string& node_address) {
  auto r = parse_object(registration);
  auto& f = *r.mutable_fields();
  google::protobuf::Struct service;
  auto& s = *service.mutable_fields();
  s["ID"] = f["ID"];
  s["Service"] = f["Name"];
  s["Tags"] = f["Tags"];
  s["Meta"] = f["Meta"];
  s["Address"] = f["Address"];
  s["Port"] = f["Port"];
  s["CreateIndex"].set_number_value(7);
  std::string service_json;
  (void)google::protobuf::util::MessageToJsonString(service, &service_json);
  return "[{\"Node\":{\"Node\":\"n\",\"Address\":\"" + node_address +
         "\"},\"Service\":" + service_json + ",\"Checks\":[]}]";
}

micro::Service round_trip(const micro::Service& service) {
  auto body = micro::consul::encode_registration(service, service.nodes[0], CheckSettings{});
  EXPECT_TRUE(body.ok()) << body.error.to_string();
  auto parsed =
      micro::consul::parse_health(health_answer_for(body.value, "10.9.9.9"), service.name);
  EXPECT_TRUE(parsed.ok()) << parsed.error.to_string();
  if (parsed.value.size() != 1) {
    ADD_FAILURE() << "expected one instance, got " << parsed.value.size();
    return {};
  }
  EXPECT_EQ(parsed.value[0].create_index, 7u);
  return parsed.value[0].service;
}

}  // namespace

TEST(ConsulEncoding, RegistrationFitsConsulsMetaRulesWhateverTheMetadata) {
  const auto service = sample();
  auto body = micro::consul::encode_registration(
      service, service.nodes[0],
      {std::chrono::milliseconds(1500), std::chrono::milliseconds(60000)});
  ASSERT_TRUE(body.ok()) << body.error.to_string();
  auto r = parse_object(body.value);
  const auto& meta = r.fields().at("Meta").struct_value().fields();
  const std::regex key_rule("[A-Za-z0-9_-]{1,128}");
  for (const auto& [key, value] : meta) {
    EXPECT_TRUE(std::regex_match(key, key_rule)) << key;
    EXPECT_LE(value.string_value().size(), 512u) << key;
  }
  EXPECT_LE(meta.size(), 64u);
  const auto& check = r.fields().at("Check").struct_value().fields();
  EXPECT_EQ(check.at("TTL").string_value(), "1500ms");
  EXPECT_EQ(check.at("DeregisterCriticalServiceAfter").string_value(), "60s");
  EXPECT_EQ(check.at("CheckID").string_value(), "service:node/1 ✓");
  EXPECT_EQ(r.fields().at("Address").string_value(), "127.0.0.1");
  EXPECT_EQ(r.fields().at("Port").number_value(), 8080);
}

TEST(ConsulEncoding, MetadataAndEndpointsComeBackByteForByteInOrder) {
  const auto service = sample();
  EXPECT_EQ(round_trip(service), service);
}

TEST(ConsulEncoding, AddressesOfEveryShapeComeBackAsGiven) {
  for (const std::string address :
       {"[::1]:9000", "example.com:80", "no-port", "host:0", "host:99999", "10.0.0.1:", ""}) {
    auto service = sample();
    service.nodes[0].address = address;
    const auto back = round_trip(service);
    ASSERT_EQ(back.nodes.size(), 1u);
    EXPECT_EQ(back.nodes[0].address, address);
  }
}

TEST(ConsulEncoding, WhatCannotBeStoredIsRefusedWithItsReason) {
  auto service = sample();
  service.metadata["bad"] = std::string("\xff\xfe", 2);
  auto body = micro::consul::encode_registration(service, service.nodes[0], {});
  EXPECT_EQ(body.error.code(), 400);
  EXPECT_NE(body.error.detail().find("UTF-8"), std::string::npos) << body.error.detail();

  service = sample();
  service.version = std::string(513, 'v');
  body = micro::consul::encode_registration(service, service.nodes[0], {});
  EXPECT_EQ(body.error.code(), 400);
  EXPECT_NE(body.error.detail().find("512"), std::string::npos) << body.error.detail();
}

TEST(ConsulEncoding, ServicesRegisteredByOthersShowTheirMeta) {
  const std::string answer =
      R"([{"Node":{"Node":"n1","Address":"10.0.0.5"},
           "Service":{"ID":"web-1","Service":"web","Tags":["e-not-base64!","primary"],
                      "Meta":{"version":"3","owner":"ops"},"Address":"","Port":80},
           "Checks":[]}])";
  auto parsed = micro::consul::parse_health(answer, "web");
  ASSERT_TRUE(parsed.ok()) << parsed.error.to_string();
  ASSERT_EQ(parsed.value.size(), 1u);
  const auto& s = parsed.value[0].service;
  EXPECT_EQ(s.version, "3");
  EXPECT_EQ(s.nodes[0].address, "10.0.0.5:80");  // the node's address when the service has none
  EXPECT_EQ(s.nodes[0].metadata, (micro::Metadata{{"owner", "ops"}}));
}

TEST(ConsulEncoding, UnreadableAnswersAreClearErrors) {
  for (const std::string body : {"", "{]", "[{\"Service\": 7}]", "{\"a\":1}", "null x"}) {
    auto parsed = micro::consul::parse_health(body, "web");
    EXPECT_EQ(parsed.error.code(), 502) << body;
    EXPECT_NE(parsed.error.detail().find("/v1/health/service/web"), std::string::npos);
  }
  auto names = micro::consul::parse_catalog_services("[1,2]");
  EXPECT_EQ(names.error.code(), 502);
  names = micro::consul::parse_catalog_services(R"({"web":["a"],"consul":[]})");
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(names.value, (std::vector<std::string>{"consul", "web"}));
}

TEST(ConsulWatchDiff, NodesAppearingTogetherAreACreateThenUpdatesInCreationOrder) {
  auto instance = [](const std::string& id, uint64_t index, const std::string& version) {
    Instance i;
    i.service.name = "s";
    i.service.version = version;
    i.service.nodes = {{id, "h:1", {}}};
    i.create_index = index;
    return i;
  };
  std::map<std::string, Instance> before;
  std::map<std::string, Instance> after = {
      {"b", instance("b", 5, "1")}, {"a", instance("a", 9, "1")}, {"c", instance("c", 6, "2")}};
  auto events = micro::consul::diff(before, after);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].type, micro::RegistryEventType::create);
  EXPECT_EQ(events[0].service.nodes[0].id, "b");
  EXPECT_EQ(events[1].type, micro::RegistryEventType::create);  // first node of version 2
  EXPECT_EQ(events[1].service.nodes[0].id, "c");
  EXPECT_EQ(events[2].type, micro::RegistryEventType::update);
  EXPECT_EQ(events[2].service.nodes[0].id, "a");

  auto changed = after;
  changed["a"].service.nodes[0].address = "h:2";
  changed.erase("b");
  events = micro::consul::diff(after, changed);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type, micro::RegistryEventType::update);
  EXPECT_EQ(events[0].service.nodes[0].address, "h:2");
  EXPECT_EQ(events[1].type, micro::RegistryEventType::remove);
  EXPECT_EQ(events[1].service.nodes[0].id, "b");
  EXPECT_TRUE(micro::consul::diff(changed, changed).empty());
}
