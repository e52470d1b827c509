// codec-json, loaded through the host: JSON <-> protobuf binary with protobuf's JSON mapping,
// and every kind of bad input answered with a clear error.
#include <gtest/gtest.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>

#include <thread>

#include "codec_test.pb.h"
#include "micro/content_type.hpp"
#include "micro/testing/files.hpp"
#include "micro/testing/stack.hpp"

namespace {

constexpr const char* kJson = "application/json";

class CodecJson : public ::testing::Test {
 protected:
  void SetUp() override { load(""); }
  void load(const std::string& options) {
    stack_ = micro::testing::require_stack("[codec]\nmodule = \"codec-json\"\n" + options,
                                           {MICRO_KIND_CODEC});
    ASSERT_NE(stack_, nullptr);
    codec_ = micro::Codec(stack_->codecs().at(0));
  }
  micro::Schema person_schema() const {
    return {micro::testing::read_file(MICRO_TEST_PROTO_DESC), "microtest.Person"};
  }
  static microtest::Person parse(const std::string& bytes) {
    microtest::Person p;
    EXPECT_TRUE(p.ParseFromString(bytes));
    return p;
  }

  std::unique_ptr<micro::host::Stack> stack_;
  micro::Codec codec_;
};

TEST_F(CodecJson, HandlesApplicationJson) {
  auto types = codec_.content_types();
  ASSERT_EQ(types.size(), 1u);
  EXPECT_EQ(types[0], "application/json");
}

TEST_F(CodecJson, TypedJsonDecodesToWhatProtobufWouldParse) {
  const std::string json =
      R"({"name":"Ann","age":30,"userId":"12","score":1.5,"active":true,"avatar":"AQI=",)"
      R"("colour":"GREEN","home":{"street":"Main","number":7},"tags":["a","b"],"lucky":[3,7],)"
      R"("labels":{"k":"v"},"past":[{"street":"Old"}]})";
  const auto schema = person_schema();
  auto decoded = codec_.decode(kJson, json, &schema);
  ASSERT_TRUE(decoded.ok()) << decoded.error.to_string();

  microtest::Person expected;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &expected).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parse(decoded.value), expected));
  EXPECT_EQ(parse(decoded.value).avatar(), std::string("\x01\x02"));
}

TEST_F(CodecJson, OriginalFieldNamesAreAcceptedOnInput) {
  const auto schema = person_schema();
  auto decoded = codec_.decode(kJson, R"({"user_id":"42"})", &schema);
  ASSERT_TRUE(decoded.ok()) << decoded.error.to_string();
  EXPECT_EQ(parse(decoded.value).user_id(), 42);
}

TEST_F(CodecJson, EncodeWritesLowerCamelCaseByDefault) {
  microtest::Person p;
  p.set_name("Ann");
  p.set_user_id(42);
  const auto schema = person_schema();
  auto encoded = codec_.encode(kJson, p.SerializeAsString(), &schema);
  ASSERT_TRUE(encoded.ok()) << encoded.error.to_string();
  EXPECT_EQ(encoded.value, R"({"name":"Ann","userId":"42"})");
}

TEST_F(CodecJson, PreserveProtoFieldNamesOptionWritesOriginalNames) {
  load("preserve_proto_field_names = true\nemit_defaults = true");
  microtest::Person p;
  p.set_user_id(42);
  const auto schema = person_schema();
  auto encoded = codec_.encode(kJson, p.SerializeAsString(), &schema);
  ASSERT_TRUE(encoded.ok()) << encoded.error.to_string();
  EXPECT_NE(encoded.value.find(R"("user_id":"42")"), std::string::npos) << encoded.value;
  EXPECT_NE(encoded.value.find(R"("age":0)"), std::string::npos) << encoded.value;
}

TEST_F(CodecJson, RoundTripKeepsEveryField) {
  microtest::Person p;
  p.set_name("Zoë");
  p.set_age(-3);
  p.set_colour(microtest::RED);
  p.mutable_home()->set_street("High");
  p.add_tags("x");
  (*p.mutable_labels())["a"] = "b";
  const auto schema = person_schema();
  auto json = codec_.encode(kJson, p.SerializeAsString(), &schema);
  ASSERT_TRUE(json.ok());
  auto back = codec_.decode(kJson, json.value, &schema);
  ASSERT_TRUE(back.ok()) << back.error.to_string();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parse(back.value), p));
}

// Found by tests/fuzz: protobuf's converter never returned on a malformed packed field (growing its
// output until memory ran out) and wrote partial JSON, with an OK status, for a truncated one.
TEST_F(CodecJson, MalformedCanonicalBytesAreRefusedNotHalfWritten) {
  const auto schema = person_schema();
  const std::string bad[] = {
      std::string("\x52\x22", 2),            // lucky: packed, runs past the end
      "\x52\x0b" + std::string(11, '\xff'),  // lucky: a varint that never ends
      std::string("\x42\x02\x0a\x05", 4)};   // home.street: truncated inside home
  for (const std::string& canonical : bad) {
    auto encoded = codec_.encode(kJson, canonical, &schema);
    EXPECT_EQ(encoded.error.code(), 500);
    EXPECT_NE(encoded.error.detail().find("not well-formed protobuf"), std::string::npos)
        << encoded.error.detail();
    EXPECT_TRUE(encoded.value.empty()) << encoded.value;
  }
}

TEST_F(CodecJson, UnknownFieldIsRejectedNamingIt) {
  const auto schema = person_schema();
  auto decoded = codec_.decode(kJson, R"({"name":"Ann","nickname":"A"})", &schema);
  EXPECT_EQ(decoded.error.code(), 400);
  EXPECT_NE(decoded.error.detail().find("nickname"), std::string::npos) << decoded.error.detail();
  EXPECT_TRUE(decoded.value.empty()) << "a failed decode leaves the output as it was";
}

TEST_F(CodecJson, IgnoreUnknownFieldsOptionAcceptsThem) {
  load("ignore_unknown_fields = true");
  const auto schema = person_schema();
  auto decoded = codec_.decode(kJson, R"({"name":"Ann","nickname":"A"})", &schema);
  ASSERT_TRUE(decoded.ok()) << decoded.error.to_string();
  EXPECT_EQ(parse(decoded.value).name(), "Ann");
}

TEST_F(CodecJson, WrongTypeIsRejectedNamingTheField) {
  const auto schema = person_schema();
  auto decoded = codec_.decode(kJson, R"({"age":"old"})", &schema);
  EXPECT_EQ(decoded.error.code(), 400);
  EXPECT_NE(decoded.error.detail().find("age"), std::string::npos) << decoded.error.detail();
}

TEST_F(CodecJson, MalformedJsonIsRejected) {
  const auto schema = person_schema();
  for (const char* bad : {R"({"name": )", "{]", "nul", R"({"name":"Ann"} trailing)"}) {
    auto decoded = codec_.decode(kJson, bad, &schema);
    EXPECT_EQ(decoded.error.code(), 400) << bad;
    EXPECT_NE(decoded.error.detail().find("microtest.Person"), std::string::npos)
        << decoded.error.detail();
  }
}

TEST_F(CodecJson, EmptyBodyIsRejected) {
  const auto schema = person_schema();
  for (const char* empty : {"", "  \n"}) {
    auto decoded = codec_.decode(kJson, empty, &schema);
    EXPECT_EQ(decoded.error.code(), 400);
    EXPECT_NE(decoded.error.detail().find("empty body"), std::string::npos);
  }
}

TEST_F(CodecJson, BodyOverTheLimitIsRefusedWith413) {
  load("max_body_bytes = 64");
  const auto schema = person_schema();
  const std::string big = R"({"name":")" + std::string(100, 'x') + R"("})";
  auto decoded = codec_.decode(kJson, big, &schema);
  EXPECT_EQ(decoded.error.code(), 413);
  EXPECT_NE(decoded.error.detail().find("limit of 64"), std::string::npos);
}

TEST_F(CodecJson, SchemaThatDoesNotParseIsRejected) {
  const micro::Schema garbage{"\xff\xff\xff not a descriptor set", "microtest.Person"};
  auto decoded = codec_.decode(kJson, R"({"name":"Ann"})", &garbage);
  EXPECT_EQ(decoded.error.code(), 400);
  EXPECT_NE(decoded.error.detail().find("does not parse"), std::string::npos)
      << decoded.error.detail();
}

TEST_F(CodecJson, MessageMissingFromTheSchemaIsRejectedByName) {
  const micro::Schema schema{micro::testing::read_file(MICRO_TEST_PROTO_DESC), "microtest.Nobody"};
  auto decoded = codec_.decode(kJson, R"({})", &schema);
  EXPECT_EQ(decoded.error.code(), 400);
  EXPECT_NE(decoded.error.detail().find("microtest.Nobody"), std::string::npos);
}

TEST_F(CodecJson, UntypedJsonPassesThroughUnchanged) {
  const std::string json = R"({"anything": [1, 2, {"x": null}]})";
  auto decoded = codec_.decode(kJson, json, nullptr);
  ASSERT_TRUE(decoded.ok()) << decoded.error.to_string();
  EXPECT_EQ(decoded.value, json);
  auto encoded = codec_.encode(kJson, json, nullptr);
  EXPECT_EQ(encoded.value, json);
}

TEST_F(CodecJson, UntypedBodyThatIsNotJsonIsRejected) {
  auto decoded = codec_.decode(kJson, "hello", nullptr);
  EXPECT_EQ(decoded.error.code(), 400);
  EXPECT_NE(decoded.error.detail().find("malformed JSON"), std::string::npos);
}

TEST_F(CodecJson, OtherContentTypeGets415) {
  auto decoded = codec_.decode("text/xml", "<a/>", nullptr);
  EXPECT_EQ(decoded.error.code(), 415);
  EXPECT_NE(decoded.error.detail().find("application/json"), std::string::npos);
}

TEST_F(CodecJson, ContentTypeParametersAndCaseAreIgnored) {
  auto decoded = codec_.decode("Application/JSON; charset=utf-8", "{}", nullptr);
  EXPECT_TRUE(decoded.ok()) << decoded.error.to_string();
}

TEST_F(CodecJson, DecodesFromManyThreadsAtOnce) {
  const auto schema = person_schema();
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const std::string name = "n" + std::to_string(t * 1000 + i);
        auto d = codec_.decode(kJson, R"({"name":")" + name + R"("})", &schema);
        microtest::Person p;
        if (!d.ok() || !p.ParseFromString(d.value) || p.name() != name) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

// Negotiation over the zero-config pair of codecs.
TEST(CodecNegotiation, PicksByMediaTypeAndNamesWhatIsSupportedOtherwise) {
  auto stack = micro::testing::require_stack(
      "[codec]\nmodule = [\"codec-json\", \"codec-proto\"]\n", {MICRO_KIND_CODEC});
  ASSERT_NE(stack, nullptr);
  const micro::CodecSet codecs(stack->codecs());
  auto json = codecs.find("application/json; charset=utf-8");
  ASSERT_TRUE(json.ok());
  EXPECT_EQ(json.value.content_types().at(0), "application/json");
  auto proto = codecs.find("application/x-protobuf");
  ASSERT_TRUE(proto.ok());
  auto none = codecs.find("text/xml");
  EXPECT_EQ(none.error.code(), 415);
  EXPECT_EQ(none.error.detail(),
            "unsupported content type 'text/xml'; supported: application/json, "
            "application/protobuf, application/x-protobuf, application/octet-stream");
  auto reply = codecs.for_response("application/protobuf;q=0.9, */*", "application/json");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply.value.first, "application/protobuf");
  auto same = codecs.for_response("", "application/json");
  EXPECT_EQ(same.value.first, "application/json");
}

}  // namespace
