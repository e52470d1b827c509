// The code protoc-gen-micro generates for examples/greeter/greeter.proto, driven end to end
// through an in-process server and client: typed calls of every kind, errors, registration,
// the embedded schema and events.
#include <gtest/gtest.h>

#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "greeter.micro.h"
#include "in_process.hpp"
#include "micro/protobuf.hpp"

namespace {

using greeter::Request;
using greeter::Response;
using greeter::StreamRequest;

Request named(const std::string& name) {
  Request request;
  request.set_name(name);
  return request;
}

Response greeting(const std::string& text) {
  Response response;
  response.set_msg(text);
  return response;
}

// The service as a user would write it.
class Greeter final : public greeter::GreeterHandler {
 public:
  micro::Error Hello(const Request& request, Response& response) override {
    if (request.name() == "boom") throw std::runtime_error("boom: the greeter broke");
    if (request.name() == "nobody") throw micro::Exception(micro::Error::not_found("nobody"));
    if (request.name().empty()) return micro::Error::bad_request("a name is required");
    response.set_msg("Hello " + request.name());
    return {};
  }

  micro::Error Stream(const StreamRequest& request,
                      micro::ServerWriter<Response>& writer) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stream_thread_ = std::this_thread::get_id();
    }
    if (request.count() < 0) return micro::Error::bad_request("count must not be negative");
    for (int i = 1; i <= request.count(); ++i) {
      if (auto e = writer.send(greeting("Hello " + request.name() + " " + std::to_string(i)));
          !e.ok())
        return e;
    }
    if (request.name() == "tired") return micro::Error(503, "out of greetings");
    return {};
  }

  micro::Error Collect(micro::ServerReader<Request>& reader, Response& response) override {
    std::string names;
    for (;;) {
      auto next = reader.recv();
      if (!next.ok()) return next.error;
      if (!next.value) break;
      names += (names.empty() ? "" : ", ") + next.value->name();
    }
    response.set_msg("Hello " + names);
    return {};
  }

  micro::Error Chat(micro::ServerReaderWriter<Request, Response>& stream) override {
    for (;;) {
      auto next = stream.recv();
      if (!next.ok()) return next.error;
      if (!next.value) return {};
      if (auto e = stream.send(greeting("Hello " + next.value->name())); !e.ok()) return e;
    }
  }

  std::thread::id stream_thread() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stream_thread_;
  }

 private:
  std::mutex mutex_;
  std::thread::id stream_thread_;
};

class GeneratedGreeter : public ::testing::Test {
 protected:
  GeneratedGreeter() {
    const micro::Error registered = greeter::RegisterGreeterHandler(server_, handler_);
    EXPECT_TRUE(registered.ok()) << registered.to_string();
  }

  // Declared first, destroyed last: the wrappers below only borrow them.
  micro::testing::InProcessServer server_impl_;
  micro::testing::InProcessClient client_impl_{server_impl_};
  // Keeps the registered handlers (and joins their stream threads) until the test ends.
  micro::Server server_{server_impl_.handle()};
  micro::Client client_{client_impl_.handle()};
  std::shared_ptr<Greeter> handler_ = std::make_shared<Greeter>();
  greeter::GreeterClient greeter_{client_, "greeter"};
};

// ---- unary ---------------------------------------------------------------------------------

TEST_F(GeneratedGreeter, HelloGreetsTheCallerByName) {
  micro::Result<Response> response = greeter_.Hello(named("John"));
  ASSERT_TRUE(response.ok()) << response.error.to_string();
  EXPECT_EQ(response.value.msg(), "Hello John");
}

TEST_F(GeneratedGreeter, HelloWithACallbackDeliversTheResponse) {
  std::promise<std::pair<micro::Error, Response>> answered;
  greeter_.Hello(named("Jane"), {}, [&](const micro::Error& error, Response response) {
    answered.set_value({error, std::move(response)});
  });
  auto [error, response] = answered.get_future().get();
  ASSERT_TRUE(error.ok()) << error.to_string();
  EXPECT_EQ(response.msg(), "Hello Jane");
}

TEST_F(GeneratedGreeter, CallsSendProtobufWithBothSchemasAndTheStubsMetadata) {
  greeter::GreeterClient traced(client_, "greeter", {{"trace-id", "abc"}});
  ASSERT_TRUE(traced.Hello(named("John")).ok());
  const micro::Request sent = client_impl_.last_request();
  EXPECT_EQ(sent.service, "greeter");
  EXPECT_EQ(sent.endpoint, "Greeter.Hello");
  EXPECT_EQ(sent.content_type, "application/protobuf");
  EXPECT_EQ(sent.accept, "application/protobuf");
  EXPECT_EQ(sent.metadata.at("trace-id"), "abc");
  Request body;
  ASSERT_TRUE(body.ParseFromString(sent.body));
  EXPECT_EQ(body.name(), "John");
  ASSERT_NE(sent.request_schema, nullptr);
  ASSERT_NE(sent.response_schema, nullptr);
  EXPECT_EQ(sent.request_schema->message_name, "greeter.Request");
  EXPECT_EQ(sent.response_schema->message_name, "greeter.Response");
}

TEST_F(GeneratedGreeter, AnErrorTheHandlerReturnsReachesTheCaller) {
  micro::Result<Response> response = greeter_.Hello(named(""));
  EXPECT_EQ(response.error.code(), 400);
  EXPECT_EQ(response.error.detail(), "a name is required");
}

TEST_F(GeneratedGreeter, AnExceptionInTheHandlerIsA500WithItsMessage) {
  micro::Result<Response> response = greeter_.Hello(named("boom"));
  EXPECT_EQ(response.error.code(), 500);
  EXPECT_EQ(response.error.detail(), "boom: the greeter broke");
}

TEST_F(GeneratedGreeter, AMicroExceptionInTheHandlerKeepsItsError) {
  micro::Result<Response> response = greeter_.Hello(named("nobody"));
  EXPECT_EQ(response.error.code(), 404);
  EXPECT_EQ(response.error.detail(), "nobody");
}

TEST_F(GeneratedGreeter, AMalformedRequestBodyIsA400NamingTheType) {
  micro::Request raw;
  raw.service = "greeter";
  raw.endpoint = "Greeter.Hello";
  raw.content_type = "application/protobuf";
  raw.body = std::string(
      "\x0a\x05"
      "ab",
      4);  // field 1 claims 5 bytes, 2 follow
  micro::Result<micro::Message> response = client_.call(raw);
  EXPECT_EQ(response.error.code(), 400);
  EXPECT_NE(response.error.detail().find("greeter.Request"), std::string::npos)
      << response.error.detail();
}

TEST_F(GeneratedGreeter, TheResponseIsProtobufLabelledAsSuch) {
  micro::Request raw;
  raw.service = "greeter";
  raw.endpoint = "Greeter.Hello";
  raw.body = named("John").SerializeAsString();
  micro::Result<micro::Message> response = client_.call(raw);
  ASSERT_TRUE(response.ok()) << response.error.to_string();
  EXPECT_EQ(response.value.header.at("content-type"), "application/protobuf");
  Response parsed;
  ASSERT_TRUE(parsed.ParseFromString(response.value.body));
  EXPECT_EQ(parsed.msg(), "Hello John");
}

// ---- streams -------------------------------------------------------------------------------

TEST_F(GeneratedGreeter, AServerStreamYieldsCountResponsesInOrderThenEnds) {
  StreamRequest request;
  request.set_name("John");
  request.set_count(3);
  micro::ClientReader<Response> reader = greeter_.Stream(request);
  for (int i = 1; i <= 3; ++i) {
    auto next = reader.recv();
    ASSERT_TRUE(next.ok()) << next.error.to_string();
    ASSERT_TRUE(next.value.has_value()) << "response " << i;
    EXPECT_EQ(next.value->msg(), "Hello John " + std::to_string(i));
  }
  auto end = reader.recv();
  ASSERT_TRUE(end.ok()) << end.error.to_string();
  EXPECT_FALSE(end.value.has_value());
}

TEST_F(GeneratedGreeter, StreamingHandlersRunOnAThreadOfTheirOwn) {
  StreamRequest request;
  request.set_count(1);
  micro::ClientReader<Response> reader = greeter_.Stream(request);
  ASSERT_TRUE(reader.recv().ok());
  EXPECT_NE(handler_->stream_thread(), std::thread::id());
  EXPECT_NE(handler_->stream_thread(), std::this_thread::get_id());
}

TEST_F(GeneratedGreeter, AServerStreamThatFailsDeliversWhatItSentThenTheError) {
  StreamRequest request;
  request.set_name("tired");
  request.set_count(1);
  micro::ClientReader<Response> reader = greeter_.Stream(request);
  auto first = reader.recv();
  ASSERT_TRUE(first.ok()) << first.error.to_string();
  ASSERT_TRUE(first.value.has_value());
  EXPECT_EQ(first.value->msg(), "Hello tired 1");
  auto failed = reader.recv();
  EXPECT_EQ(failed.error.code(), 503);
  EXPECT_EQ(failed.error.detail(), "out of greetings");
}

TEST_F(GeneratedGreeter, AClientStreamCollectsEveryRequestIntoOneResponse) {
  micro::ClientWriter<Request, Response> writer = greeter_.Collect();
  for (const char* name : {"John", "Jane", "Joe"}) {
    const micro::Error sent = writer.send(named(name));
    ASSERT_TRUE(sent.ok()) << sent.to_string();
  }
  micro::Result<Response> response = writer.close_and_recv();
  ASSERT_TRUE(response.ok()) << response.error.to_string();
  EXPECT_EQ(response.value.msg(), "Hello John, Jane, Joe");
}

TEST_F(GeneratedGreeter, AMalformedStreamedRequestFailsTheStreamWithA400) {
  micro::Request open;
  open.service = "greeter";
  open.endpoint = "Greeter.Collect";
  micro::Result<micro::Stream> stream = client_.stream(open);
  ASSERT_TRUE(stream.ok()) << stream.error.to_string();
  ASSERT_TRUE(stream.value
                  .send(micro::Message{{},
                                       std::string("\x0a\x05"
                                                   "ab",
                                                   4)})
                  .ok());
  ASSERT_TRUE(stream.value.close_send().ok());
  auto frame = stream.value.recv();
  ASSERT_TRUE(frame.ok()) << frame.error.to_string();  // the in-process pipe passes frames as-is
  ASSERT_TRUE(frame.value.has_value());
  const micro::Error error = micro::rpc::frame_error(*frame.value);
  EXPECT_EQ(error.code(), 400);
  EXPECT_NE(error.detail().find("greeter.Request"), std::string::npos) << error.detail();
}

TEST_F(GeneratedGreeter, ABidirectionalStreamAnswersEachRequestAsItArrives) {
  micro::ClientReaderWriter<Request, Response> chat = greeter_.Chat();
  for (const char* name : {"John", "Jane"}) {
    ASSERT_TRUE(chat.send(named(name)).ok());
    auto reply = chat.recv();
    ASSERT_TRUE(reply.ok()) << reply.error.to_string();
    ASSERT_TRUE(reply.value.has_value());
    EXPECT_EQ(reply.value->msg(), std::string("Hello ") + name);
  }
  ASSERT_TRUE(chat.close_send().ok());
  auto end = chat.recv();
  ASSERT_TRUE(end.ok()) << end.error.to_string();
  EXPECT_FALSE(end.value.has_value());
}

TEST_F(GeneratedGreeter, AStreamThatCannotOpenReportsWhyOnEveryCall) {
  micro::testing::InProcessServer empty;
  micro::testing::InProcessClient nowhere(empty);
  greeter::GreeterClient unserved(micro::Client(nowhere.handle()), "greeter");
  micro::ClientWriter<Request, Response> writer = unserved.Collect();
  EXPECT_EQ(writer.send(named("John")).code(), 404);
  EXPECT_EQ(writer.close_and_recv().error.code(), 404);
}

// ---- registration and schema ---------------------------------------------------------------

TEST_F(GeneratedGreeter, RegistrationServesEveryMethodWithItsFlagsAndSchemas) {
  EXPECT_EQ(server_impl_.endpoint_names(),
            (std::vector<std::string>{"Greeter.Chat", "Greeter.Collect", "Greeter.Hello",
                                      "Greeter.Stream"}));
  struct Expected {
    const char* name;
    bool streaming;
    const char* request;
  };
  for (const Expected& e : {Expected{"Greeter.Hello", false, "greeter.Request"},
                            Expected{"Greeter.Stream", true, "greeter.StreamRequest"},
                            Expected{"Greeter.Collect", true, "greeter.Request"},
                            Expected{"Greeter.Chat", true, "greeter.Request"}}) {
    SCOPED_TRACE(e.name);
    auto endpoint = server_impl_.endpoint(e.name);
    ASSERT_TRUE(endpoint.has_value());
    EXPECT_EQ((endpoint->flags & MICRO_ENDPOINT_STREAMING) != 0, e.streaming);
    EXPECT_EQ(static_cast<bool>(endpoint->on_call), !e.streaming);
    EXPECT_EQ(static_cast<bool>(endpoint->on_stream), e.streaming);
    ASSERT_NE(endpoint->request_schema, nullptr);
    ASSERT_NE(endpoint->response_schema, nullptr);
    EXPECT_EQ(endpoint->request_schema->message_name, e.request);
    EXPECT_EQ(endpoint->response_schema->message_name, "greeter.Response");
  }
}

TEST_F(GeneratedGreeter, RegisteringTwiceIsAConflict) {
  EXPECT_EQ(greeter::RegisterGreeterHandler(server_, std::make_shared<Greeter>()).code(), 409);
}

TEST(GeneratedRegistration, ANullHandlerIsRefused) {
  micro::testing::InProcessServer impl;
  const micro::Error error = greeter::RegisterGreeterHandler(micro::Server(impl.handle()), nullptr);
  EXPECT_EQ(error.code(), 400);
  EXPECT_TRUE(impl.endpoint_names().empty());
}

TEST(GeneratedSchema, TheEmbeddedDescriptorSetParsesAndHoldsTheFilesMessages) {
  std::shared_ptr<const micro::Schema> schema = greeter::greeter_proto_schema("greeter.Request");
  ASSERT_NE(schema, nullptr);
  google::protobuf::FileDescriptorSet set;
  ASSERT_TRUE(set.ParseFromString(schema->file_descriptor_set));
  ASSERT_EQ(set.file_size(), 1);
  EXPECT_EQ(set.file(0).name(), "greeter.proto");
  EXPECT_EQ(set.file(0).service(0).method_size(), 4);

  auto parsed = micro::protobuf::parse_schema(*schema);
  ASSERT_TRUE(parsed.ok()) << parsed.error.to_string();
  EXPECT_EQ(parsed.value->message->full_name(), "greeter.Request");
  EXPECT_EQ(parsed.value->message->field(0)->name(), "name");
  // The very file protoc compiled into greeter.pb.cc, with JSON names as --descriptor_set_out.
  google::protobuf::FileDescriptorProto compiled;
  Request::descriptor()->file()->CopyTo(&compiled);
  Request::descriptor()->file()->CopyJsonNameTo(&compiled);
  EXPECT_EQ(set.file(0).SerializeAsString(), compiled.SerializeAsString());
}

TEST(GeneratedSchema, KnowsEveryMessageOnceAndNothingElse) {
  for (const char* name :
       {"greeter.Request", "greeter.StreamRequest", "greeter.Response", "greeter.Greeted"}) {
    EXPECT_NE(greeter::greeter_proto_schema(name), nullptr) << name;
  }
  EXPECT_EQ(greeter::greeter_proto_schema("greeter.Request"),
            greeter::greeter_proto_schema("greeter.Request"));  // made once, then shared
  EXPECT_EQ(greeter::greeter_proto_schema("greeter.Nope"), nullptr);
}

// ---- events --------------------------------------------------------------------------------

TEST_F(GeneratedGreeter, APublishedEventReachesATypedSubscriber) {
  std::vector<std::string> seen;
  const micro::Error subscribed =
      greeter::Subscribe(server_, "greeter.greeted", [&](const greeter::Greeted& event) {
        seen.push_back(event.name() + "@" + std::to_string(event.at_unix_ms()));
        return micro::Error{};
      });
  ASSERT_TRUE(subscribed.ok()) << subscribed.to_string();
  greeter::Greeted event;
  event.set_name("John");
  event.set_at_unix_ms(42);
  const micro::Error published = greeter::Publish(client_, "greeter.greeted", event);
  ASSERT_TRUE(published.ok()) << published.to_string();
  EXPECT_EQ(seen, std::vector<std::string>{"John@42"});
}

TEST_F(GeneratedGreeter, ASubscriberReadsJsonEventsAndItsErrorReachesThePublisher) {
  std::vector<std::string> seen;
  const micro::Error subscribed =
      greeter::Subscribe(server_, "greeter.greeted", [&](const greeter::Greeted& event) {
        seen.push_back(event.name());
        if (event.name() == "late") return micro::Error(409, "too late to greet");
        return micro::Error{};
      });
  ASSERT_TRUE(subscribed.ok()) << subscribed.to_string();
  const micro::Error json = client_.publish(
      "greeter.greeted",
      micro::Message{{{"content-type", "application/json"}}, R"({"name":"Ann","atUnixMs":"7"})"});
  ASSERT_TRUE(json.ok()) << json.to_string();
  greeter::Greeted late;
  late.set_name("late");
  EXPECT_EQ(greeter::Publish(client_, "greeter.greeted", late).code(), 409);
  const micro::Error garbage = client_.publish("greeter.greeted", micro::Message{{}, "\xff"});
  EXPECT_EQ(garbage.code(), 400);
  EXPECT_EQ(seen, (std::vector<std::string>{"Ann", "late"}));
}

}  // namespace
