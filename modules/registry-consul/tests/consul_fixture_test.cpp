// HashiCorp's own fixtures: the JSON templates of the npm package @hashicorp/consul-api-double
// (pinned; fetched at configure time, see CMakeLists.txt) for GET /v1/health/service/:service,
// rendered by fixtures/render_template.js. The module's parser must read them, and the answers
// of our Consul double must have their shape (every key it sends, with the same JSON type).
//
// Missing fixtures fail the test, naming what to do; MICRO_OFFLINE=1 turns that into a skip.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "micro/testing/child_process.hpp"
#include "consul_double.hpp"
#include "consul_json.hpp"

namespace {

namespace beast = boost::beast;
namespace http = beast::http;

bool offline() {
  const char* v = std::getenv("MICRO_OFFLINE");
  return v != nullptr && std::string(v) == "1";
}

// Why HashiCorp's fixtures cannot be used here, or "" when they can.
std::string missing_fixtures() {
  const std::string package = CONSUL_API_DOUBLE_DIR;
  const std::string node = NODE_EXECUTABLE;
  std::string why;
  if (!std::filesystem::exists(package + "/package/package.json"))
    why += "the fixtures of @hashicorp/consul-api-double " +
           std::string(CONSUL_API_DOUBLE_VERSION) + " are missing from " + package + "; ";
  if (node.empty() || !std::filesystem::exists(node)) why += "node (nodejs) was not found; ";
  if (why.empty()) return why;
  return why +
         "install npm (scripts/install-deps) and configure again with the npm registry "
         "reachable, or set MICRO_OFFLINE=1 to skip this test";
}

#define REQUIRE_FIXTURES()                              \
  do {                                                  \
    const std::string why = missing_fixtures();         \
    if (!why.empty() && offline()) GTEST_SKIP() << why; \
    if (!why.empty()) FAIL() << why;                    \
  } while (false)

// The rendered body of `template_path` for `url`.
std::string render(const std::string& template_path, const std::string& url) {
  micro::testing::ChildProcess child(
      {NODE_EXECUTABLE, RENDER_SCRIPT, CONSUL_API_DOUBLE_DIR, template_path, url});
  const int status = child.wait_exit();
  EXPECT_EQ(status, 0) << "rendering " << template_path << " failed";
  return status == 0 ? child.output() : std::string();
}

// "Service.Port:number", "Checks[].Status:string", ... of a JSON value; the keys of a Meta map are
// the user's, so they read as "Meta.*".
void shape(const google::protobuf::Value& v, const std::string& path, std::set<std::string>* out) {
  using K = google::protobuf::Value::KindCase;
  switch (v.kind_case()) {
    case K::kStructValue:
      out->insert(path + ":object");
      for (const auto& [key, child] : v.struct_value().fields()) {
        const bool free_keys = path.size() >= 4 && path.compare(path.size() - 4, 4, "Meta") == 0;
        shape(child, (path.empty() ? "" : path + ".") + (free_keys ? "*" : key), out);
      }
      break;
    case K::kListValue:
      out->insert(path + ":array");
      for (const auto& child : v.list_value().values()) shape(child, path + "[]", out);
      break;
    case K::kNumberValue:
      out->insert(path + ":number");
      break;
    case K::kStringValue:
      out->insert(path + ":string");
      break;
    case K::kBoolValue:
      out->insert(path + ":bool");
      break;
    default:
      out->insert(path + ":null");
      break;
  }
}

std::set<std::string> shape_of(const std::string& json) {
  google::protobuf::Value v;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &v).ok()) << json;
  std::set<std::string> out;
  shape(v, "", &out);
  return out;
}

std::string request(const std::string& port, http::verb verb, const std::string& target,
                    const std::string& body = "") {
  boost::asio::io_context io;
  beast::tcp_stream stream(io);
  boost::asio::ip::tcp::resolver resolver(io);
  stream.connect(resolver.resolve("127.0.0.1", port));
  http::request<http::string_body> req(verb, target, 11);
  req.set(http::field::host, "127.0.0.1");
  req.body() = body;
  req.prepare_payload();
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  EXPECT_EQ(res.result_int(), 200u) << target << ": " << res.body();
  return res.body();
}

}  // namespace

TEST(ConsulApiDoubleFixtures, ModuleReadsHashicorpsHealthServiceAnswers) {
  REQUIRE_FIXTURES();
  for (const std::string name : {"web", "web-proxy", "db-sidecar-proxy"}) {
    const std::string body = render("v1/health/service/_", "/v1/health/service/" + name);
    ASSERT_FALSE(body.empty());
    auto parsed = micro::consul::parse_health(body, name);
    ASSERT_TRUE(parsed.ok()) << parsed.error.to_string();
    ASSERT_EQ(parsed.value.size(), 3u) << name;  // CONSUL_NODE_COUNT in render_template.js
    for (const auto& instance : parsed.value) {
      const auto& node = instance.service.nodes.at(0);
      EXPECT_EQ(instance.service.name, name);
      EXPECT_FALSE(node.id.empty());
      EXPECT_EQ(node.address, "10.0.0.1:32767");
      EXPECT_EQ(node.metadata.count("external-source"), 1u);  // a foreign service's Meta
      EXPECT_EQ(instance.create_index, 5u);
    }
    auto services = micro::consul::group_by_version(parsed.value);
    ASSERT_EQ(services.size(), 1u);
    EXPECT_EQ(services[0].nodes.size(), 3u);
  }
}

TEST(ConsulApiDoubleFixtures, OurDoubleAnswersInHashicorpsShape) {
  REQUIRE_FIXTURES();
  const std::string fixture = render("v1/health/service/_", "/v1/health/service/web");
  ASSERT_FALSE(fixture.empty());
  const auto expected = shape_of(fixture);

  micro::consul::testing::ConsulDouble consul;
  const std::string port = std::to_string(consul.port());
  request(port, http::verb::put, "/v1/agent/service/register",
          R"({"ID":"web-1","Name":"web","Tags":["a"],"Meta":{"k":"v"},"Address":"10.0.0.2",
              "Port":80,"Check":{"CheckID":"service:web-1","TTL":"10s","Status":"passing"}})");
  const auto actual = shape_of(request(port, http::verb::get, "/v1/health/service/web"));
  ASSERT_FALSE(actual.empty());
  for (const auto& key : actual)
    EXPECT_EQ(expected.count(key), 1u)
        << "the double sends " << key << ", which HashiCorp's fixture does not have";
}
