// broker-http over TLS: a subscriber with tls_cert/tls_key registers secure=true and its endpoint
// speaks TLS only; publishers dial it with TLS and verify its certificate against tls_ca. The
// stacks meet in a registry-file folder; the certificates are made per test
// (micro/testing/tls_certs.hpp).
#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <filesystem>

#include "micro/module.hpp"
#include "micro/testing/stack.hpp"
#include "micro/testing/tls_certs.hpp"
#include "micro/testing/wait.hpp"

namespace {

namespace net = boost::asio;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using micro::testing::tls::TestCerts;

class BrokerHttpTls : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/micro-broker-tls-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    subscriber_stack_ = stack("tls_cert = \"" + certs_.cert + "\"\ntls_key = \"" + certs_.key +
                              "\"\n");
    ASSERT_NE(subscriber_stack_, nullptr);
    subscriber_ = micro::Broker(subscriber_stack_->broker());
    ASSERT_TRUE(subscriber_.connect().ok());
    auto sub = subscriber_.subscribe("orders", [this](std::string_view, const micro::Message& m) {
      seen_.push(m.body);
      return micro::Error{};
    });
    ASSERT_TRUE(sub.ok()) << sub.error.to_string();
    subscription_ = std::move(sub.value);
  }
  void TearDown() override {
    subscription_ = {};
    subscriber_stack_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  std::unique_ptr<micro::host::Stack> stack(const std::string& broker_options) {
    return micro::testing::require_stack(
        "[registry]\nmodule = \"registry-file\"\npath = \"" + dir_ + "\"\n" +
            "[broker]\nmodule = \"broker-http\"\naddress = \"127.0.0.1:0\"\n" +
            "publish_timeout_ms = 5000\nread_timeout_ms = 5000\n" + broker_options,
        {MICRO_KIND_BROKER});
  }

  // The subscriber's node as the registry has it.
  micro::Node node() {
    micro::Registry registry(subscriber_stack_->registry());
    auto got = registry.get_service("micro.http.broker");
    EXPECT_TRUE(got.ok()) << got.error.to_string();
    if (!got.ok() || got.value.empty() || got.value[0].nodes.empty()) return {};
    return got.value[0].nodes[0];
  }

  TestCerts certs_;
  std::string dir_;
  std::unique_ptr<micro::host::Stack> subscriber_stack_;
  micro::Broker subscriber_;
  micro::Subscription subscription_;
  micro::testing::Collector<std::string> seen_;
};

TEST_F(BrokerHttpTls, SecureSubscriberIsAdvertisedAndReceivesFromAPublisherTrustingItsCa) {
  EXPECT_EQ(node().metadata["secure"], "true");
  auto publisher_stack = stack("tls_ca = \"" + certs_.ca + "\"\n");
  ASSERT_NE(publisher_stack, nullptr);
  micro::Broker publisher(publisher_stack->broker());
  for (const char* body : {"first", "second"}) {  // the second over the pooled TLS connection
    const micro::Error e = publisher.publish("orders", micro::Message{{}, body});
    ASSERT_TRUE(e.ok()) << e.to_string();
  }
  EXPECT_EQ(seen_.snapshot(), (std::vector<std::string>{"first", "second"}));
}

TEST_F(BrokerHttpTls, PublisherWithTheWrongCaGetsAnErrorNamingTheCertificateProblem) {
  auto publisher_stack = stack("tls_ca = \"" + certs_.other + "\"\n");
  ASSERT_NE(publisher_stack, nullptr);
  micro::Broker publisher(publisher_stack->broker());
  const micro::Error e = publisher.publish("orders", micro::Message{{}, "never"});
  EXPECT_FALSE(e.ok());
  EXPECT_NE(e.detail().find("certificate verify failed"), std::string::npos) << e.to_string();
  EXPECT_NE(e.detail().find("unable to get local issuer certificate"), std::string::npos)
      << e.to_string();
  EXPECT_TRUE(seen_.snapshot().empty());
}

TEST_F(BrokerHttpTls, PlaintextPostToTheTlsEndpointIsRefusedAndTheSubscriberLives) {
  const std::string address = node().address;
  const size_t colon = address.rfind(':');
  ASSERT_NE(colon, std::string::npos);
  net::io_context ioc;
  tcp::socket socket(ioc);
  socket.connect({net::ip::make_address(address.substr(0, colon)),
                  static_cast<uint16_t>(std::stoi(address.substr(colon + 1)))});
  const std::string body = R"({"topic":"orders","header":{},"body":"cGxhaW4="})";
  const std::string request = "POST /?id=" + node().id +
                              " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              "Content-Length: " +
                              std::to_string(body.size()) + "\r\n\r\n" + body;
  net::write(socket, net::buffer(request));
  boost::beast::flat_buffer buffer;
  http::response<http::string_body> response;
  boost::system::error_code ec;
  http::read(socket, buffer, response, ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(response.result_int(), 400u);
  EXPECT_NE(response.body().find("plaintext HTTP sent to a TLS broker endpoint"),
            std::string::npos)
      << response.body();
  EXPECT_TRUE(seen_.snapshot().empty()) << "nothing was delivered in plaintext";

  auto publisher_stack = stack("tls_ca = \"" + certs_.ca + "\"\n");
  ASSERT_NE(publisher_stack, nullptr);
  micro::Broker publisher(publisher_stack->broker());
  const micro::Error e = publisher.publish("orders", micro::Message{{}, "after"});
  ASSERT_TRUE(e.ok()) << e.to_string();
  EXPECT_EQ(seen_.snapshot(), std::vector<std::string>{"after"});
}

TEST(BrokerHttpTlsOptions, AMissingCertificateFileIsRefusedNamingTheOption) {
  auto built = micro::testing::build_stack(
      "[registry]\nmodule = \"registry-memory\"\n"
      "[broker]\nmodule = \"broker-http\"\ntls_cert = \"/nonexistent/cert.pem\"\n"
      "tls_key = \"/nonexistent/key.pem\"\n",
      {MICRO_KIND_BROKER});
  ASSERT_FALSE(built.ok());
  EXPECT_NE(built.errors.at(0).find("broker-http: cannot use tls_cert '/nonexistent/cert.pem'"),
            std::string::npos)
      << built.errors.at(0);
}

}  // namespace
