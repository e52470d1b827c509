// Generated code for the awkward shapes in protos/: imports, nested types, a method named like a
// message, the lite runtime, a package that contains `micro`.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "edge/v1/edge.micro.h"
#include "in_process.hpp"
#include "lite/lite.micro.h"
#include "micro/protobuf.hpp"

namespace {

TEST(GeneratedShapes, TheDescriptorSetHoldsTheImportsBeforeTheFile) {
  auto schema = edge::v1::edge_proto_schema("edge.v1.Outer");
  ASSERT_NE(schema, nullptr);
  google::protobuf::FileDescriptorSet set;
  ASSERT_TRUE(set.ParseFromString(schema->file_descriptor_set));
  std::vector<std::string> files;
  for (const auto& file : set.file()) files.push_back(file.name());
  EXPECT_EQ(files,
            (std::vector<std::string>{"google/protobuf/empty.proto",
                                      "google/protobuf/timestamp.proto", "edge/v1/edge.proto"}));
  auto parsed = micro::protobuf::parse_schema(*schema);
  ASSERT_TRUE(parsed.ok()) << parsed.error.to_string();
  EXPECT_EQ(parsed.value->message->FindFieldByName("at")->message_type()->full_name(),
            "google.protobuf.Timestamp");
}

TEST(GeneratedShapes, SchemasCoverNestedAndImportedTypesButNotMapEntries) {
  for (const char* name : {"edge.v1.Outer", "edge.v1.Outer.Inner", "edge.v1.Request",
                           "google.protobuf.Empty", "google.protobuf.Timestamp"}) {
    auto schema = edge::v1::edge_proto_schema(name);
    ASSERT_NE(schema, nullptr) << name;
    EXPECT_TRUE(micro::protobuf::parse_schema(*schema).ok()) << name;
  }
  EXPECT_EQ(edge::v1::edge_proto_schema("edge.v1.Outer.CountsEntry"), nullptr);
}

class Odd final : public edge::v1::OddHandler {
 public:
  micro::Error Ping(const google::protobuf::Empty&, google::protobuf::Timestamp& now) override {
    now.set_seconds(42);
    return {};
  }
  micro::Error Request(const edge::v1::Request& request, edge::v1::Outer_Inner& response) override {
    response.set_value("id " + request.id());
    return {};
  }
  micro::Error Watch(const google::protobuf::Empty&,
                     micro::ServerWriter<edge::v1::Outer_Inner>& writer) override {
    edge::v1::Outer_Inner inner;
    inner.set_value("only");
    return writer.send(inner);
  }
};

TEST(GeneratedShapes, ImportedAndNestedTypesTravelThroughTypedCalls) {
  micro::testing::InProcessServer server_impl;
  micro::testing::InProcessClient client_impl(server_impl);
  micro::Server server(server_impl.handle());
  ASSERT_TRUE(edge::v1::RegisterOddHandler(server, std::make_shared<Odd>()).ok());
  edge::v1::OddClient odd(micro::Client(client_impl.handle()), "edge");

  auto now = odd.Ping(google::protobuf::Empty());
  ASSERT_TRUE(now.ok()) << now.error.to_string();
  EXPECT_EQ(now.value.seconds(), 42);

  edge::v1::Request request;
  request.set_id("7");
  auto inner = odd.Request(request);
  ASSERT_TRUE(inner.ok()) << inner.error.to_string();
  EXPECT_EQ(inner.value.value(), "id 7");

  auto watch = odd.Watch(google::protobuf::Empty());
  auto first = watch.recv();
  ASSERT_TRUE(first.ok() && first.value) << first.error.to_string();
  EXPECT_EQ(first.value->value(), "only");
  auto end = watch.recv();
  EXPECT_TRUE(end.ok() && !end.value);
}

class Notes final : public acme::micro::lite::NotesHandler {
 public:
  micro::Error Echo(const acme::micro::lite::Note& note,
                    acme::micro::lite::Note& response) override {
    response.set_text(note.text());
    return {};
  }
};

TEST(GeneratedShapes, TheLiteRuntimeServesAndPublishes) {
  using acme::micro::lite::Note;
  micro::testing::InProcessServer server_impl;
  micro::testing::InProcessClient client_impl(server_impl);
  micro::Server server(server_impl.handle());
  micro::Client client(client_impl.handle());
  ASSERT_TRUE(acme::micro::lite::RegisterNotesHandler(server, std::make_shared<Notes>()).ok());

  Note note;
  note.set_text("lite");
  auto echoed = acme::micro::lite::NotesClient(client, "notes").Echo(note);
  ASSERT_TRUE(echoed.ok()) << echoed.error.to_string();
  EXPECT_EQ(echoed.value.text(), "lite");

  std::string seen;
  ASSERT_TRUE(acme::micro::lite::Subscribe(server, "notes", [&](const Note& event) {
                seen = event.text();
                return micro::Error{};
              }).ok());
  ASSERT_TRUE(acme::micro::lite::Publish(client, "notes", note).ok());
  EXPECT_EQ(seen, "lite");
}

}  // namespace
