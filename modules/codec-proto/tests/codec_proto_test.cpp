// codec-proto, loaded through the host: protobuf bytes pass through untouched when well-formed,
// and malformed ones are refused with the field and offset of the first fault.
#include <gtest/gtest.h>

#include "codec_test.pb.h"
#include "micro/codec.hpp"
#include "micro/testing/files.hpp"
#include "micro/testing/stack.hpp"

namespace {

constexpr const char* kProto = "application/protobuf";

class CodecProto : public ::testing::Test {
 protected:
  void SetUp() override { load(""); }
  void load(const std::string& options) {
    stack_ = micro::testing::require_stack("[codec]\nmodule = \"codec-proto\"\n" + options,
                                           {MICRO_KIND_CODEC});
    ASSERT_NE(stack_, nullptr);
    codec_ = micro::Codec(stack_->codecs().at(0));
  }
  micro::Schema person_schema() const {
    return {micro::testing::read_file(MICRO_TEST_PROTO_DESC), "microtest.Person"};
  }
  static std::string person_bytes() {
    microtest::Person p;
    p.set_name("Ann");
    p.set_age(30);
    p.mutable_home()->set_street("Main");
    p.mutable_home()->set_number(7);
    p.add_lucky(3);
    p.add_lucky(7);
    (*p.mutable_labels())["k"] = "v";
    return p.SerializeAsString();
  }

  std::unique_ptr<micro::host::Stack> stack_;
  micro::Codec codec_;
};

TEST_F(CodecProto, HandlesProtobufTypesAndRawBytes) {
  auto types = codec_.content_types();
  std::vector<std::string> names(types.begin(), types.end());
  EXPECT_EQ(names, (std::vector<std::string>{"application/protobuf", "application/x-protobuf",
                                             "application/octet-stream"}));
}

TEST_F(CodecProto, WellFormedBytesPassThroughUnchanged) {
  const auto schema = person_schema();
  const std::string bytes = person_bytes();
  for (const char* type : {"application/protobuf", "application/x-protobuf"}) {
    auto decoded = codec_.decode(type, bytes, &schema);
    ASSERT_TRUE(decoded.ok()) << decoded.error.to_string();
    EXPECT_EQ(decoded.value, bytes);
    auto encoded = codec_.encode(type, bytes, &schema);
    EXPECT_EQ(encoded.value, bytes);
  }
}

TEST_F(CodecProto, EmptyBodyIsTheEmptyMessage) {
  const auto schema = person_schema();
  auto decoded = codec_.decode(kProto, "", &schema);
  EXPECT_TRUE(decoded.ok()) << decoded.error.to_string();
  EXPECT_TRUE(decoded.value.empty());
}

TEST_F(CodecProto, TruncatedBytesAreRefusedWithTheOffset) {
  const auto schema = person_schema();
  const std::string bytes = person_bytes();
  auto decoded = codec_.decode(kProto, bytes.substr(0, bytes.size() - 2), &schema);
  EXPECT_EQ(decoded.error.code(), 400);
  EXPECT_NE(decoded.error.detail().find("offset"), std::string::npos) << decoded.error.detail();
  EXPECT_NE(decoded.error.detail().find("truncated"), std::string::npos) << decoded.error.detail();
}

TEST_F(CodecProto, WrongWireTypeNamesTheField) {
  const auto schema = person_schema();
  // Field 2 (age, an int32: varint) sent as length-delimited.
  const std::string bytes("\x12\x01x", 3);
  auto decoded = codec_.decode(kProto, bytes, &schema);
  EXPECT_EQ(decoded.error.code(), 400);
  EXPECT_EQ(decoded.error.detail(),
            "malformed protobuf: field 'age' (2) of microtest.Person at offset 0 is "
            "length-delimited, expected varint");
}

TEST_F(CodecProto, FaultInsideANestedMessageNamesTheInnerField) {
  const auto schema = person_schema();
  // home (8) = Address{ number (2) as length-delimited }, at offset 2 of the body.
  const std::string bytes("\x42\x03\x12\x01x", 5);
  auto decoded = codec_.decode(kProto, bytes, &schema);
  EXPECT_EQ(decoded.error.code(), 400);
  EXPECT_EQ(decoded.error.detail(),
            "malformed protobuf: field 'number' (2) of microtest.Address at offset 2 is "
            "length-delimited, expected varint");
}

TEST_F(CodecProto, GarbageIsRefusedWithAndWithoutSchema) {
  const auto schema = person_schema();
  const std::string garbage("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11);
  EXPECT_EQ(codec_.decode(kProto, garbage, &schema).error.code(), 400);
  EXPECT_EQ(codec_.decode(kProto, garbage, nullptr).error.code(), 400);
  EXPECT_EQ(codec_.decode(kProto, std::string("\x00", 1), nullptr).error.code(), 400)
      << "field number 0 is invalid";
}

TEST_F(CodecProto, DeeplyNestedGroupsAreRefusedNotOverflowed) {
  std::string bytes;
  for (int i = 0; i < 5000; ++i) bytes += '\x0b';  // start-group of field 1, never closed
  auto decoded = codec_.decode(kProto, bytes, nullptr);
  EXPECT_EQ(decoded.error.code(), 400);
}

TEST_F(CodecProto, BodyOverTheLimitIsRefusedWith413) {
  load("max_body_bytes = 16");
  auto decoded = codec_.decode(kProto, person_bytes(), nullptr);
  EXPECT_EQ(decoded.error.code(), 413);
}

TEST_F(CodecProto, OctetStreamPassesAnyBytes) {
  const std::string bytes("\xff\x00garbage", 9);
  auto decoded = codec_.decode("application/octet-stream", bytes, nullptr);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded.value, bytes);
}

TEST_F(CodecProto, ValidationCanBeTurnedOff) {
  load("validate = false");
  const std::string garbage("\xff\xff", 2);
  auto decoded = codec_.decode(kProto, garbage, nullptr);
  EXPECT_TRUE(decoded.ok());
}

TEST_F(CodecProto, SchemaThatDoesNotParseIsRejected) {
  const micro::Schema garbage{"\xff\xff", "microtest.Person"};
  EXPECT_EQ(codec_.decode(kProto, person_bytes(), &garbage).error.code(), 400);
}

TEST_F(CodecProto, JsonGets415) {
  auto decoded = codec_.decode("application/json", "{}", nullptr);
  EXPECT_EQ(decoded.error.code(), 415);
  EXPECT_NE(decoded.error.detail().find("application/protobuf"), std::string::npos);
}

}  // namespace
