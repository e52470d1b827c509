// The batch body and its results (batch.hpp) on their own: what a publisher writes parses back
// to the same messages, the subscriber's checks refuse bad batches with a 400 naming the fault,
// results travel one per message, and the publisher's size estimate bounds the real size.
// (No module is loaded here: the generated batch messages are linked in directly.)
#include <gtest/gtest.h>

#include "batch.hpp"
#include "envelope.hpp"

namespace {

using namespace micro::broker_http;

TEST(BatchWire, WhatAPublisherWritesReadsBackAsTheHandlerGetsIt) {
  const std::vector<micro::Message> messages = {
      {{{"Trace-Id", "t-1"}, {"content-type", "text/plain"}}, std::string("a\0b", 3)},
      {{}, ""},
      {{}, std::string(300, 'x')},
  };
  wire::Batch batch;
  batch.set_topic("orders");
  size_t estimate = batch_overhead("orders");
  for (const auto& m : messages) {
    add_to_batch(batch, m);
    estimate += batch_bytes(m);
  }
  const std::string body = batch.SerializeAsString();
  EXPECT_LE(body.size(), estimate) << "the estimate is an upper bound";

  wire::Batch read;
  ASSERT_TRUE(decode_batch(body, read).ok());
  ASSERT_EQ(read.messages_size(), 3);
  EXPECT_EQ(read.topic(), "orders");
  micro::Message got;
  to_message(read.topic(), read.messages(0), got);
  EXPECT_EQ(got.body, std::string("a\0b", 3));
  EXPECT_EQ(got.header, (micro::Metadata{{"content-type", "text/plain"},
                                         {"micro-topic", "orders"},
                                         {"trace-id", "t-1"}}));
  to_message(read.topic(), read.messages(1), got);  // the same object, reused
  EXPECT_EQ(got.body, "");
  EXPECT_EQ(got.header, (micro::Metadata{{"micro-topic", "orders"}}));
  to_message(read.topic(), read.messages(2), got);
  EXPECT_EQ(got.body, std::string(300, 'x'));
  EXPECT_EQ(got.header, (micro::Metadata{{"micro-topic", "orders"}}));
}

TEST(BatchWire, BadBatchesAreRefusedNamingTheFault) {
  wire::Batch out;
  auto refused = [&](const std::string& body) { return decode_batch(body, out); };
  micro::Error e = refused("\xff\xff\xff\xff");
  EXPECT_EQ(e.code(), 400);
  EXPECT_NE(e.detail().find("does not parse"), std::string::npos) << e.to_string();

  wire::Batch no_topic;
  no_topic.add_messages()->set_body("x");
  e = refused(no_topic.SerializeAsString());
  EXPECT_EQ(e.code(), 400);
  EXPECT_NE(e.detail().find("names no topic"), std::string::npos) << e.to_string();

  wire::Batch empty;
  empty.set_topic("t");
  e = refused(empty.SerializeAsString());
  EXPECT_NE(e.detail().find("no messages"), std::string::npos) << e.to_string();

  wire::Batch unnamed;
  unnamed.set_topic("t");
  unnamed.add_messages();
  (*unnamed.add_messages()->mutable_header())[""] = "v";
  e = refused(unnamed.SerializeAsString());
  EXPECT_EQ(e.code(), 400);
  EXPECT_NE(e.detail().find("message 1 has a header with an empty name"), std::string::npos)
      << e.to_string();
}

TEST(BatchWire, ResultsTravelOnePerMessage) {
  wire::Results results;
  set_result(*results.add_results(), {}, false);
  set_result(*results.add_results(), micro::Error(422, "no such order", "shop"), false);
  set_result(*results.add_results(), micro::Error(410, "gone"), true);
  set_result(*results.add_results(), micro::Error(7, "odd code"), false);
  const std::string body = results.SerializeAsString();

  std::vector<micro::Error> errors;
  std::vector<bool> gone;
  ASSERT_TRUE(decode_results(body, 4, errors, gone).ok());
  EXPECT_TRUE(errors[0].ok());
  EXPECT_FALSE(gone[0]);
  EXPECT_EQ(errors[1].code(), 422);
  EXPECT_EQ(errors[1].detail(), "no such order");
  EXPECT_EQ(errors[1].id(), "shop");
  EXPECT_TRUE(errors[2].ok());
  EXPECT_TRUE(gone[2]) << "gone is not an error: another queue member may take it";
  EXPECT_EQ(errors[3].code(), 500) << "a code outside 400-599 reads as 500";

  micro::Error e = decode_results(body, 5, errors, gone);
  EXPECT_EQ(e.code(), 502);
  EXPECT_NE(e.detail().find("answered 4 results to a batch of 5 messages"), std::string::npos);
  e = decode_results("\xff\xff", 1, errors, gone);
  EXPECT_EQ(e.code(), 502);
}

TEST(BatchWire, TheEndpointTakesBatchesOnlyWhenItAdvertisesThem) {
  std::string id;
  BodyKind kind = BodyKind::envelope;
  ASSERT_TRUE(check_request("POST", "/?id=a", kBatchType, "/", kBatchType, id, kind).ok());
  EXPECT_EQ(kind, BodyKind::batch);
  ASSERT_TRUE(check_request("POST", "/?id=a", "application/json", "/", kBatchType, id, kind).ok());
  EXPECT_EQ(kind, BodyKind::envelope);
  const micro::Error off = check_request("POST", "/?id=a", kBatchType, "/", "", id, kind);
  EXPECT_EQ(off.code(), 415);
  EXPECT_NE(off.detail().find("takes application/json, not"), std::string::npos)
      << off.to_string();
}

TEST(BatchWire, HeadersThatAreNotUtf8CannotTravel) {
  EXPECT_TRUE(header_is_utf8(micro::Message{{{"k", "värde"}}, "\xff"}))
      << "the body is bytes";
  EXPECT_FALSE(header_is_utf8(micro::Message{{{"k", "\xff"}}, ""}));
}

}  // namespace
