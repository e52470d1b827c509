// Streams over transport-http (docs/rpc-wire.md, "Streams"): the head, frames both ways full
// duplex, half-close in each direction, error frames, a peer that goes away.
#include <atomic>
#include <thread>

#include "harness.hpp"
#include "micro/testing/tls_certs.hpp"

namespace {

using namespace micro::testing::http;
using micro::Error;
using micro::Message;
using micro::testing::Collector;

micro::DialOptions stream_options() {
  micro::DialOptions o;
  o.stream = true;
  return o;
}

Message frame(std::string body) { return Message{{}, std::move(body)}; }

// What one side of a stream received: frames in order, then how it ended.
struct Received {
  std::mutex mutex;
  std::vector<std::string> frames;
  std::optional<Error> ended;  // ok: clean end of stream
  Collector<int> done;
  void frame(std::string body) {
    std::lock_guard<std::mutex> lock(mutex);
    frames.push_back(std::move(body));
  }
  void end(const Error& e) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      ended = e;
    }
    done.push(1);
  }
  bool wait(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    return done.wait_for([](auto& v) { return !v.empty(); }, timeout);
  }
};

// Receives frames until the end or an error, asynchronously.
void receive_all(micro::Socket& socket, Received& into) {
  socket.recv([&socket, &into](const Error& e, std::optional<Message> m) {
    if (!e.ok() || !m) return into.end(e);
    into.frame(std::move(m->body));
    receive_all(socket, into);
  });
}

// Sends frames "0".."n-1" one after another, then half-closes; `done` gets the outcome.
void send_numbers(micro::Socket& socket, int next, int n, Collector<Error>& done) {
  if (next == n) {
    socket.close_send([&done](const Error& e) { done.push(e); });
    return;
  }
  socket.send(frame(std::to_string(next)), [&socket, next, n, &done](const Error& e) {
    if (!e.ok()) return done.push(e);
    send_numbers(socket, next + 1, n, done);
  });
}

TEST(TransportHttpStream, TheFirstRecvGivesTheHeadThenFramesThenTheEnd) {
  TransportStack t;
  Collector<Message> heads;
  Received server_got;
  TestServer server(t.transport, [&](micro::Socket& s) {
    s.recv([&](const Error& e, std::optional<Message> head) {
      ASSERT_TRUE(e.ok() && head);
      heads.push(*head);
      Message reply;
      reply.header["Content-Type"] = "application/json";
      reply.header["Micro-Id"] = "s1";
      reply.body = "first";
      s.send(reply, [&](const Error&) {
        s.send(frame("second"), [&](const Error&) {
          s.close_send([&](const Error&) { receive_all(s, server_got); });
        });
      });
    });
  });
  auto dialed = t.transport.dial(server.address(), stream_options());
  ASSERT_TRUE(dialed.ok()) << dialed.error.to_string();
  micro::Socket& socket = dialed.value;
  Message open = request("/Chat.Talk", "hello");
  open.header["Micro-Service"] = "chat";
  ASSERT_TRUE(socket.send(open).ok());
  ASSERT_TRUE(socket.send(frame("")).ok());  // an empty frame is a frame
  ASSERT_TRUE(socket.send(frame("bye")).ok());
  ASSERT_TRUE(socket.close_send().ok());

  auto head = socket.recv();
  ASSERT_TRUE(head.ok() && head.value) << head.error.to_string();
  EXPECT_EQ(head.value->header.at(":status"), "200");
  EXPECT_EQ(head.value->header.at("micro-id"), "s1");
  EXPECT_TRUE(head.value->body.empty());
  for (const char* expected : {"first", "second"}) {
    auto m = socket.recv();
    ASSERT_TRUE(m.ok() && m.value) << m.error.to_string();
    EXPECT_EQ(m.value->body, expected);
  }
  auto end = socket.recv();
  EXPECT_TRUE(end.ok()) << end.error.to_string();
  EXPECT_FALSE(end.value.has_value());

  ASSERT_TRUE(server_got.wait());
  EXPECT_TRUE(server_got.ended->ok()) << server_got.ended->to_string();
  EXPECT_EQ(server_got.frames, (std::vector<std::string>{"hello", "", "bye"}));
  ASSERT_EQ(heads.snapshot().size(), 1u);
  const Message h = heads.snapshot()[0];
  EXPECT_EQ(h.header.at(":path"), "/Chat.Talk");
  EXPECT_EQ(h.header.at(":method"), "POST");
  EXPECT_EQ(h.header.at("micro-stream"), "1");
  EXPECT_EQ(h.header.at("micro-service"), "chat");
  EXPECT_TRUE(h.body.empty());
}

TEST(TransportHttpStream, AHundredThousandMessagesEachWayArriveCompleteAndInOrder) {
  constexpr int kCount = 100000;
  TransportStack t;
  Received server_got;
  Collector<Error> server_sent;
  TestServer server(t.transport, [&](micro::Socket& s) {
    s.recv([&](const Error& e, std::optional<Message> head) {
      if (!e.ok() || !head) return server_got.end(e);
      s.send(Message{}, [&](const Error& sent) {  // the response head, then frames, full duplex
        if (!sent.ok()) return server_sent.push(sent);
        send_numbers(s, 0, kCount, server_sent);
      });
      receive_all(s, server_got);
    });
  });
  Received client_got;  // declared before the socket: it outlives the socket's callbacks
  Collector<Error> client_sent;
  auto dialed = t.transport.dial(server.address(), stream_options());
  ASSERT_TRUE(dialed.ok());
  micro::Socket& socket = dialed.value;
  ASSERT_TRUE(socket.send(request("/Numbers.Swap", "")).ok());
  auto head = socket.recv();
  ASSERT_TRUE(head.ok() && head.value) << head.error.to_string();

  receive_all(socket, client_got);
  send_numbers(socket, 0, kCount, client_sent);

  ASSERT_TRUE(client_got.wait(100s)) << "client received " << client_got.frames.size();
  ASSERT_TRUE(server_got.wait(100s)) << "server received " << server_got.frames.size();
  ASSERT_TRUE(client_sent.wait_for([](auto& v) { return !v.empty(); }, 100s));
  ASSERT_TRUE(server_sent.wait_for([](auto& v) { return !v.empty(); }, 100s));
  EXPECT_TRUE(client_sent.snapshot()[0].ok()) << client_sent.snapshot()[0].to_string();
  EXPECT_TRUE(server_sent.snapshot()[0].ok()) << server_sent.snapshot()[0].to_string();
  EXPECT_TRUE(client_got.ended->ok()) << client_got.ended->to_string();
  EXPECT_TRUE(server_got.ended->ok()) << server_got.ended->to_string();
  for (auto* got : {&client_got, &server_got}) {
    ASSERT_EQ(got->frames.size(), static_cast<size_t>(kCount));
    for (int i = 0; i < kCount; ++i) ASSERT_EQ(got->frames[i], std::to_string(i)) << i;
  }
}

TEST(TransportHttpStream, TheClientHalfClosesAndStillReceives) {
  TransportStack t;
  Received server_got;
  Collector<Error> server_sent;
  TestServer server(t.transport, [&](micro::Socket& s) {
    s.recv([&](const Error&, std::optional<Message>) {
      // Reads every frame to the end of the request, and only then answers.
      s.recv([&](const Error&, std::optional<Message> m1) {
        if (m1) server_got.frame(m1->body);
        s.recv([&](const Error& e, std::optional<Message> end) {
          if (end) return server_got.end(Error::internal("expected the end"));
          server_got.end(e);
          s.send(Message{{}, "after your end"}, [&](const Error&) {
            s.send(frame("and more"), [&](const Error&) {
              s.close_send([&](const Error& closed) { server_sent.push(closed); });
            });
          });
        });
      });
    });
  });
  auto dialed = t.transport.dial(server.address(), stream_options());
  ASSERT_TRUE(dialed.ok());
  ASSERT_TRUE(dialed.value.send(request("/Half.Close", "only")).ok());
  ASSERT_TRUE(dialed.value.close_send().ok());
  EXPECT_EQ(dialed.value.send(frame("too late")).code(), 400);
  ASSERT_TRUE(server_got.wait());
  EXPECT_TRUE(server_got.ended->ok());
  EXPECT_EQ(server_got.frames, std::vector<std::string>{"only"});
  auto head = dialed.value.recv();
  ASSERT_TRUE(head.ok() && head.value);
  for (const char* expected : {"after your end", "and more"}) {
    auto m = dialed.value.recv();
    ASSERT_TRUE(m.ok() && m.value) << m.error.to_string();
    EXPECT_EQ(m.value->body, expected);
  }
  auto end = dialed.value.recv();
  EXPECT_TRUE(end.ok() && !end.value);
}

TEST(TransportHttpStream, TheServerHalfClosesAndStillReceives) {
  TransportStack t;
  Received server_got;
  TestServer server(t.transport, [&](micro::Socket& s) {
    s.recv([&](const Error&, std::optional<Message>) {
      s.send(Message{{}, "all I have"}, [&](const Error&) {
        s.close_send([&](const Error&) { receive_all(s, server_got); });
      });
    });
  });
  auto dialed = t.transport.dial(server.address(), stream_options());
  ASSERT_TRUE(dialed.ok());
  micro::Socket& socket = dialed.value;
  ASSERT_TRUE(socket.send(request("/Half.Close", "")).ok());
  ASSERT_TRUE(socket.recv().value.has_value());  // head
  auto only = socket.recv();
  ASSERT_TRUE(only.ok() && only.value);
  EXPECT_EQ(only.value->body, "all I have");
  auto end = socket.recv();
  ASSERT_TRUE(end.ok() && !end.value) << end.error.to_string();
  // The server's side is closed; ours goes on.
  for (const char* body : {"one", "two"}) ASSERT_TRUE(socket.send(frame(body)).ok());
  ASSERT_TRUE(socket.close_send().ok());
  ASSERT_TRUE(server_got.wait());
  EXPECT_TRUE(server_got.ended->ok());
  EXPECT_EQ(server_got.frames, (std::vector<std::string>{"one", "two"}));
}

TEST(TransportHttpStream, AnErrorFrameCompletesRecvWithThatError) {
  TransportStack t;
  TestServer server(t.transport, [&](micro::Socket& s) {
    s.recv([&](const Error&, std::optional<Message>) {
      s.send(Message{}, [&](const Error&) {
        Message failure;
        failure.header["Micro-Error"] =
            R"({"id":"chat","code":404,"detail":"no such room","status":"Not Found"})";
        s.send(failure, [&](const Error&) { s.send(frame("still here"), [](const Error&) {}); });
      });
    });
  });
  auto dialed = t.transport.dial(server.address(), stream_options());
  ASSERT_TRUE(dialed.ok());
  ASSERT_TRUE(dialed.value.send(request("/Chat.Join", "")).ok());
  ASSERT_TRUE(dialed.value.recv().value.has_value());
  auto failed = dialed.value.recv();
  EXPECT_EQ(failed.error.code(), 404);
  EXPECT_EQ(failed.error.id(), "chat");
  EXPECT_EQ(failed.error.detail(), "no such room");
  EXPECT_EQ(failed.error.status(), "Not Found");
  auto next = dialed.value.recv();
  ASSERT_TRUE(next.ok() && next.value);
  EXPECT_EQ(next.value->body, "still here");
}

TEST(TransportHttpStream, AServerThatGoesAwayMidStreamGivesTheClientAClearError) {
  TransportStack t;
  TestServer server(t.transport, [&](micro::Socket& s) {
    s.recv([&](const Error&, std::optional<Message>) {
      s.send(Message{{}, "one"}, [&](const Error&) { s.close(); });
    });
  });
  auto dialed = t.transport.dial(server.address(), stream_options());
  ASSERT_TRUE(dialed.ok());
  ASSERT_TRUE(dialed.value.send(request("/Chat.Talk", "")).ok());
  ASSERT_TRUE(dialed.value.recv().value.has_value());
  auto one = dialed.value.recv();
  ASSERT_TRUE(one.ok() && one.value);
  auto gone = dialed.value.recv();
  EXPECT_EQ(gone.error.code(), 503) << gone.error.to_string();
  EXPECT_NE(gone.error.detail().find("connection to " + server.address()), std::string::npos)
      << gone.error.detail();
  EXPECT_NE(gone.error.detail().find("by the peer"), std::string::npos) << gone.error.detail();
}

TEST(TransportHttpStream, AClientThatGoesAwayMidStreamGivesTheServerAClearError) {
  TransportStack t;
  Received server_got;
  TestServer server(t.transport, [&](micro::Socket& s) {
    s.recv([&](const Error&, std::optional<Message>) { receive_all(s, server_got); });
  });
  std::string local;
  {
    auto dialed = t.transport.dial(server.address(), stream_options());
    ASSERT_TRUE(dialed.ok());
    local = std::string(dialed.value.local_address());
    ASSERT_TRUE(dialed.value.send(request("/Chat.Talk", "one")).ok());
    ASSERT_TRUE(dialed.value.send(frame("two")).ok());
  }  // destroyed mid-stream
  ASSERT_TRUE(server_got.wait());
  EXPECT_EQ(server_got.frames, (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(server_got.ended->code(), 503) << server_got.ended->to_string();
  EXPECT_NE(server_got.ended->detail().find("connection from " + local), std::string::npos)
      << server_got.ended->detail();
}

// ---- the fast path: sends and recvs complete on the caller's thread when they can, within
// bounds (outbox and inbox), and closing keeps what was already sent.

// Opens a stream to `server` and waits for its response head.
micro::Socket open_stream(TransportStack& t, TestServer& server, const std::string& path,
                          std::string* protocol = nullptr) {
  auto dialed = t.transport.dial(server.address(), stream_options());
  EXPECT_TRUE(dialed.ok()) << dialed.error.to_string();
  EXPECT_TRUE(dialed.value.send(request(path, "")).ok());
  auto head = dialed.value.recv();
  EXPECT_TRUE(head.ok() && head.value) << head.error.to_string();
  if (protocol != nullptr && head.value) *protocol = header_value(*head.value, "micro-transport-protocol");
  return std::move(dialed.value);
}

// A server that answers the head at once and keeps the socket for the test.
struct HeldServer {
  explicit HeldServer(TransportStack& t)
      : server(t.transport, [this](micro::Socket& s) {
          s.recv([this, &s](const Error&, std::optional<Message>) {
            s.send(Message{}, [this, &s](const Error&) { held.push(&s); });
          });
        }) {}
  micro::Socket& socket() {
    EXPECT_TRUE(held.wait_for([](auto& v) { return !v.empty(); }, 10s));
    return *held.snapshot().at(0);
  }
  Collector<micro::Socket*> held;
  TestServer server;
};

TEST(TransportHttpStream, SendsWithRoomInTheOutboxCompleteBeforeSendReturns) {
  TransportStack t;
  Received got;
  HeldServer held(t);
  micro::Socket socket = open_stream(t, held.server, "/Fast.Send");
  const auto me = std::this_thread::get_id();
  for (int i = 0; i < 100; ++i) {
    bool done = false;
    std::thread::id on;
    socket.send(frame(std::to_string(i)), [&](const Error& e) {
      EXPECT_TRUE(e.ok()) << e.to_string();
      done = true;
      on = std::this_thread::get_id();
    });
    ASSERT_TRUE(done) << "send " << i << " did not complete inline";
    EXPECT_EQ(on, me);
  }
  ASSERT_TRUE(socket.close_send().ok());
  receive_all(held.socket(), got);
  ASSERT_TRUE(got.wait());
  EXPECT_TRUE(got.ended->ok()) << got.ended->to_string();
  ASSERT_EQ(got.frames.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(got.frames[i], std::to_string(i));
}

// A sender whose peer reads nothing is held back (frames of 64 KiB, well before 64 MiB); once the
// peer reads, the held-back send completes and every frame arrives, in order.
void held_back_then_delivered(TransportStack& t, const std::string& expected_protocol) {
  Received got;                   // (declared before the sockets: it outlives their callbacks)
  Collector<Error> completions;  // every send's outcome, in order
  HeldServer held(t);
  std::string protocol;
  micro::Socket socket = open_stream(t, held.server, "/Slow.Reader", &protocol);
  if (!expected_protocol.empty()) {
    EXPECT_EQ(protocol, expected_protocol);
  }
  // 64 KiB frames until one send is held back: the server's inbox, both kernels' buffers and
  // our outbox are bounded, so that happens well before 64 MiB.
  const std::string payload(64 * 1024, 'x');
  int sent = 0;
  auto completed = [&](int n) {
    return [&completions, n](auto& v) { return v.size() == static_cast<size_t>(n); };
  };
  for (; sent < 1024; ++sent) {
    socket.send(frame(std::to_string(sent) + ":" + payload),
                [&completions](const Error& e) { completions.push(e); });
    if (!completions.wait_for(completed(sent + 1), 2s)) break;
    ASSERT_TRUE(completions.snapshot().back().ok()) << completions.snapshot().back().to_string();
  }
  ASSERT_LT(sent, 1024) << "64 MiB were accepted by a peer that reads nothing";
  // Once the server reads, the held-back send completes and every frame arrives, in order.
  receive_all(held.socket(), got);
  ASSERT_TRUE(completions.wait_for(completed(sent + 1), 10s));
  EXPECT_TRUE(completions.snapshot().back().ok()) << completions.snapshot().back().to_string();
  ASSERT_TRUE(socket.close_send().ok());
  ASSERT_TRUE(got.wait());
  EXPECT_TRUE(got.ended->ok()) << got.ended->to_string();
  ASSERT_EQ(got.frames.size(), static_cast<size_t>(sent + 1));
  for (int i = 0; i <= sent; ++i)
    ASSERT_EQ(got.frames[i], std::to_string(i) + ":" + payload) << i;
}

TEST(TransportHttpStream, APeerThatNeverReceivesEventuallyHoldsTheSenderBack) {
  TransportStack t;
  held_back_then_delivered(t, "");
}

// Over HTTP/2 the receiver opens its window as its reader takes frames, so the sender is held
// back there too (the receiver never buffers more than a window).
TEST(TransportHttpStream, OverHttp2APeerThatNeverReceivesEventuallyHoldsTheSenderBack) {
  micro::testing::tls::TestCerts certs;
  TransportStack t("tls_cert = \"" + certs.cert + "\"\ntls_key = \"" + certs.key +
                   "\"\ntls_ca = \"" + certs.ca + "\"\n");
  ASSERT_TRUE(t.stack);
  held_back_then_delivered(t, "h2");
}

TEST(TransportHttpStream, CloseWritesTheFramesAlreadySentThenFailsLaterOperationsWith499) {
  TransportStack t;
  Received got;
  HeldServer held(t);
  micro::Socket socket = open_stream(t, held.server, "/Close.Queued");
  receive_all(held.socket(), got);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(socket.send(frame(std::to_string(i))).ok());
  socket.close();
  EXPECT_EQ(socket.send(frame("late")).code(), 499);
  EXPECT_EQ(socket.recv().error.code(), 499);
  ASSERT_TRUE(got.wait());
  EXPECT_FALSE(got.ended->ok());  // the body never ended: the connection did
  ASSERT_EQ(got.frames.size(), 1000u);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(got.frames[i], std::to_string(i)) << i;
}

TEST(TransportHttpStream, CloseFromAnotherThreadCompletesAWaitingRecvWith499) {
  TransportStack t;
  Collector<Error> got;
  HeldServer held(t);
  micro::Socket socket = open_stream(t, held.server, "/Close.Waiting");
  socket.recv([&](const Error& e, std::optional<Message>) { got.push(e); });
  std::thread closer([&] { socket.close(); });
  closer.join();
  ASSERT_TRUE(got.wait_for([](auto& v) { return !v.empty(); }, 10s));
  EXPECT_EQ(got.snapshot()[0].code(), 499) << got.snapshot()[0].to_string();
}

TEST(TransportHttpStream, FramesThatArrivedBeforeTheConnectionFailedAreReceivedFirst) {
  TransportStack t;
  HeldServer held(t);
  micro::Socket socket = open_stream(t, held.server, "/Then.Fail");
  micro::Socket& server_side = held.socket();
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(server_side.send(frame(std::to_string(i))).ok());
  server_side.close();  // writes the 50 frames, then closes the connection mid-body
  for (int i = 0; i < 50; ++i) {
    auto m = socket.recv();
    ASSERT_TRUE(m.ok() && m.value) << i << ": " << m.error.to_string();
    EXPECT_EQ(m.value->body, std::to_string(i));
  }
  auto failed = socket.recv();
  EXPECT_FALSE(failed.ok());
  EXPECT_EQ(failed.error.code(), 503) << failed.error.to_string();
  EXPECT_EQ(socket.recv().error.code(), 503);  // and again: the stream stays failed
}

}  // namespace
