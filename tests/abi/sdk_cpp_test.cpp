// The SDK's C++ side, tested through the C ABI: small plugins made the way the host makes them
// (micro::plugin<T>() and its C factory), called through their C vtables by the caller-side
// wrappers (micro::Codec, micro::Transport, ...).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstddef>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "micro/module.hpp"

namespace {

using micro::Error;
using micro::Message;

// An instance of plugin T, made through its C descriptor as the host makes it, and destroyed
// through its vtable at the end of the scope.
template <class Handle>
class Instance {
 public:
  explicit Instance(Handle handle) : handle_(handle) {}
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;
  ~Instance() {
    if (handle_.self != nullptr) handle_.vtable->destroy(handle_.self);
  }
  Handle handle() const { return handle_; }
  // The plugin object itself, for the test to drive or inspect.
  template <class T>
  T& plugin() const {
    return static_cast<T&>(*static_cast<typename T::KindBase*>(handle_.self));
  }

 private:
  Handle handle_;
};

template <class T, class Handle>
Handle create(const micro_dependencies_t* deps = nullptr) {
  const micro_plugin_t* plugin = micro::plugin<T>("test-plugin", "made by a test");
  const micro_create_args_t args{sizeof(micro_create_args_t), nullptr, nullptr, nullptr, 0, deps};
  void* self = nullptr;
  const Error error = micro::take_error(plugin->create(&args, &self));
  EXPECT_TRUE(error.ok()) << error.to_string();
  return Handle{static_cast<decltype(Handle::vtable)>(plugin->vtable), self};
}

// A copy of `full` that claims to be only `size` bytes long, as a module built against an older
// SDK would hand over.
template <class Vtable>
Vtable truncated(const Vtable* full, size_t size) {
  Vtable copy = *full;
  copy.struct_size = size;
  return copy;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// ---- codec -----------------------------------------------------------------------------------

class UpperCodec : public micro::CodecPlugin {
 public:
  explicit UpperCodec(const micro::CreateContext&) {}

  std::vector<std::string> content_types() override {
    ++content_types_calls;
    return {"text/plain", "text/upper"};
  }
  Error decode(std::string_view content_type, std::string_view wire, const micro::SchemaRef* schema,
               std::string& out) override {
    if (wire == "throw") throw std::runtime_error("decoder exploded");
    if (wire == "refuse")
      throw micro::Exception(Error(415, "cannot read " + std::string(content_type)));
    last_schema = schema != nullptr ? std::optional(schema->to_schema()) : std::nullopt;
    out.append(wire);
    return Error{};
  }
  Error encode(std::string_view, std::string_view canonical, const micro::SchemaRef*,
               std::string& out) override {
    if (canonical.empty()) return Error::bad_request("nothing to encode");
    out += upper(canonical);
    return Error{};
  }

  int content_types_calls = 0;
  std::optional<micro::Schema> last_schema;
};

TEST(Codec, EncodeAppendsThePluginsOutputToTheCallersString) {
  Instance<micro_codec_t> instance(create<UpperCodec, micro_codec_t>());
  micro::Codec codec(instance.handle());
  std::string out = "prefix:";
  const Error error = codec.encode("text/upper", "hello", nullptr, out);
  EXPECT_TRUE(error.ok()) << error.to_string();
  EXPECT_EQ(out, "prefix:HELLO");
  EXPECT_EQ(codec.encode("text/upper", "again").value, "AGAIN");
}

TEST(Codec, PluginErrorsReachTheCallerAndLeaveTheOutputAlone) {
  Instance<micro_codec_t> instance(create<UpperCodec, micro_codec_t>());
  micro::Codec codec(instance.handle());
  std::string out = "kept";
  const Error error = codec.encode("text/upper", "", nullptr, out);
  EXPECT_EQ(error.code(), 400);
  EXPECT_EQ(error.detail(), "nothing to encode");
  EXPECT_EQ(out, "kept");
}

TEST(Codec, ThrowingPluginGivesTheCaller500WithTheMessage) {
  Instance<micro_codec_t> instance(create<UpperCodec, micro_codec_t>());
  micro::Codec codec(instance.handle());
  std::string out = "kept";
  const Error error = codec.decode("text/plain", "throw", nullptr, out);
  EXPECT_EQ(error.code(), 500);
  EXPECT_NE(error.detail().find("decoder exploded"), std::string::npos) << error.detail();
  EXPECT_EQ(out, "kept");
}

TEST(Codec, ThrownMicroExceptionKeepsItsChosenCode) {
  Instance<micro_codec_t> instance(create<UpperCodec, micro_codec_t>());
  const auto result = micro::Codec(instance.handle()).decode("text/csv", "refuse");
  EXPECT_EQ(result.error.code(), 415);
  EXPECT_EQ(result.error.detail(), "cannot read text/csv");
  EXPECT_EQ(result.error.status(), "Unsupported Media Type");
}

TEST(Codec, SchemaReachesThePluginAndNullStaysNull) {
  Instance<micro_codec_t> instance(create<UpperCodec, micro_codec_t>());
  micro::Codec codec(instance.handle());
  const micro::Schema schema{std::string("\x0a\x00\x01", 3), "greeter.Request"};
  std::string out;
  ASSERT_TRUE(codec.decode("text/plain", "x", &schema, out).ok());
  const auto& seen = instance.plugin<UpperCodec>().last_schema;
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->message_name, "greeter.Request");
  EXPECT_EQ(seen->file_descriptor_set, schema.file_descriptor_set);
  ASSERT_TRUE(codec.decode("text/plain", "x", nullptr, out).ok());
  EXPECT_FALSE(instance.plugin<UpperCodec>().last_schema.has_value());
}

TEST(Codec, ContentTypesAreComputedOnceAndStayAtTheSameAddress) {
  Instance<micro_codec_t> instance(create<UpperCodec, micro_codec_t>());
  const micro_codec_t handle = instance.handle();
  const micro_str_t* first = nullptr;
  const micro_str_t* second = nullptr;
  size_t count = 0;
  handle.vtable->content_types(handle.self, &first, &count);
  handle.vtable->content_types(handle.self, &second, &count);
  EXPECT_EQ(first, second);
  ASSERT_EQ(count, 2u);
  EXPECT_EQ(micro::to_view(first[1]), "text/upper");
  EXPECT_EQ(instance.plugin<UpperCodec>().content_types_calls, 1);
  const auto types = micro::Codec(handle).content_types();
  EXPECT_EQ(types, (std::vector<std::string_view>{"text/plain", "text/upper"}));
}

// A codec written against the C ABI alone: it writes through reserve (twice, the second time
// large enough to make the caller's string reallocate), and can fail after writing.
micro_error_t* reserving_transcode(void*, micro_str_t, micro_bytes_t input, const micro_schema_t*,
                                   micro_sink_t* out) {
  uint8_t* head = out->reserve(out->ctx, 1);
  *head = '[';
  uint8_t* body = out->reserve(out->ctx, input.size + 1000);
  std::memcpy(body, input.data, input.size);
  std::memset(body + input.size, '.', 1000);
  if (micro::to_view(input) == "fail-after-writing")
    return Error::bad_request("failed after writing").to_owned_c();
  return nullptr;
}
void no_destroy(void*) {}
const micro_codec_vtable_t kReservingCodec{sizeof(micro_codec_vtable_t), &no_destroy, nullptr,
                                           &reserving_transcode, &reserving_transcode};

TEST(Codec, ReserveWritesStraightIntoTheCallersString) {
  micro::Codec codec(micro_codec_t{&kReservingCodec, nullptr});
  std::string out = "x";
  ASSERT_TRUE(codec.decode("any", "abc", nullptr, out).ok());
  EXPECT_EQ(out, "x[abc" + std::string(1000, '.'));
}

TEST(Codec, OutputOfAFailedCallIsDiscarded) {
  micro::Codec codec(micro_codec_t{&kReservingCodec, nullptr});
  std::string out = "before";
  EXPECT_EQ(codec.encode("any", "fail-after-writing", nullptr, out).code(), 400);
  EXPECT_EQ(out, "before");
}

// A sink with reserve only, as a C caller may hand over.
uint8_t* reserve_into_string(void* ctx, size_t size) {
  auto* s = static_cast<std::string*>(ctx);
  s->resize(s->size() + size);
  return reinterpret_cast<uint8_t*>(&(*s)[s->size() - size]);
}

TEST(Codec, PluginOutputReachesASinkThatOnlyReserves) {
  Instance<micro_codec_t> instance(create<UpperCodec, micro_codec_t>());
  std::string out;
  micro_sink_t sink{sizeof(micro_sink_t), &out, nullptr, &reserve_into_string};
  const micro_codec_t h = instance.handle();
  const micro_bytes_t input = micro::to_c_bytes("quiet");
  EXPECT_EQ(h.vtable->encode(h.self, micro::to_c("text/upper"), input, nullptr, &sink), nullptr);
  EXPECT_EQ(out, "QUIET");
}

TEST(Codec, WrapperOverAnOlderVtableReturns501ForWhatItLacks) {
  Instance<micro_codec_t> instance(create<UpperCodec, micro_codec_t>());
  const micro_codec_t h = instance.handle();
  const auto old = truncated(h.vtable, offsetof(micro_codec_vtable_t, decode));
  micro::Codec codec(micro_codec_t{&old, h.self});
  std::string out;
  const Error error = codec.decode("text/plain", "x", nullptr, out);
  EXPECT_EQ(error.code(), 501);
  EXPECT_NE(error.detail().find("decode"), std::string::npos);
  EXPECT_EQ(codec.encode("text/plain", "x").error.code(), 501);
  EXPECT_EQ(codec.content_types().size(), 2u);
}

// ---- transport -------------------------------------------------------------------------------

std::atomic<int> g_live_channels{0};

// Echoes what it is sent; after close_send, recv reports the end of the stream.
template <class Base>
class EchoChannel : public Base {
 public:
  EchoChannel() { ++g_live_channels; }
  ~EchoChannel() override { --g_live_channels; }

  void send(Message message, micro::Done done) override {
    if (message.body == "complete-then-throw") {
      done(Error{});
      throw std::runtime_error("thrown after completing");
    }
    if (message.body == "throw") throw std::runtime_error("send exploded");
    queue_.push_back(std::move(message));
    done(Error{});
  }
  void recv(micro::MessageCallback on_message) override {
    if (!queue_.empty()) {
      Message next = std::move(queue_.front());
      queue_.pop_front();
      return on_message(Error{}, std::move(next));
    }
    if (send_closed_) return on_message(Error{}, std::nullopt);
    on_message(Error(499, "nothing was sent"), std::nullopt);
  }
  void close_send(micro::Done done) override {
    send_closed_ = true;
    done(Error{});
  }

 private:
  std::deque<Message> queue_;
  bool send_closed_ = false;
};

class EchoSocket : public EchoChannel<micro::SocketImpl> {
 public:
  explicit EchoSocket(std::string remote) : remote_(std::move(remote)) {}
  void close() override { closed = true; }
  std::string_view local_address() const override { return "127.0.0.1:1000"; }
  std::string_view remote_address() const override { return remote_; }
  bool closed = false;

 private:
  std::string remote_;
};

class LoopTransport;

class LoopListener : public micro::ListenerImpl {
 public:
  LoopListener(LoopTransport* transport, micro::SocketImplCallback on_accept);
  ~LoopListener() override;
  std::string_view address() const override { return "127.0.0.1:4242"; }
  micro::SocketImplCallback on_accept;

 private:
  LoopTransport* transport_;
};

// Dials sockets that echo; its listener accepts when the test calls accept().
class LoopTransport : public micro::TransportPlugin {
 public:
  explicit LoopTransport(const micro::CreateContext&) {}

  void dial(const std::string& address, const micro::DialOptions& options,
            micro::SocketImplCallback on_dialed) override {
    last_options = options;
    if (address == "throw") throw std::runtime_error("no route to " + address);
    if (address == "refused") {
      // A socket that comes with an error must be destroyed, not delivered.
      return on_dialed(Error::unavailable("connection refused"),
                       std::make_unique<EchoSocket>(address));
    }
    if (address == "twice") on_dialed(Error{}, std::make_unique<EchoSocket>(address));
    on_dialed(Error{}, std::make_unique<EchoSocket>(address));
  }
  std::unique_ptr<micro::ListenerImpl> listen(const std::string& address,
                                              micro::SocketImplCallback on_accept) override {
    if (address == "in-use") throw micro::Exception(Error::conflict(address + " is in use"));
    return std::make_unique<LoopListener>(this, std::move(on_accept));
  }

  // An incoming connection on the open listener, if any.
  void accept(const std::string& remote) {
    if (listener != nullptr) listener->on_accept(Error{}, std::make_unique<EchoSocket>(remote));
  }

  micro::DialOptions last_options;
  LoopListener* listener = nullptr;
};

LoopListener::LoopListener(LoopTransport* transport, micro::SocketImplCallback accept)
    : on_accept(std::move(accept)), transport_(transport) {
  transport_->listener = this;
}
LoopListener::~LoopListener() { transport_->listener = nullptr; }

TEST(Transport, DialGivesTheCallerASocketItOwnsAndDestroys) {
  Instance<micro_transport_t> instance(create<LoopTransport, micro_transport_t>());
  micro::Transport transport(instance.handle());
  {
    auto dialed = transport.dial("10.0.0.1:80", {250, true});
    ASSERT_TRUE(dialed.ok()) << dialed.error.to_string();
    micro::Socket socket = std::move(dialed.value);
    EXPECT_EQ(g_live_channels, 1);
    EXPECT_EQ(socket.remote_address(), "10.0.0.1:80");
    EXPECT_EQ(socket.local_address(), "127.0.0.1:1000");
    EXPECT_EQ(instance.plugin<LoopTransport>().last_options.timeout_ms, 250u);
    EXPECT_TRUE(instance.plugin<LoopTransport>().last_options.stream);

    ASSERT_TRUE(socket.send(Message{{{"Content-Type", "text/plain"}}, "ping"}).ok());
    auto received = socket.recv();
    ASSERT_TRUE(received.ok()) << received.error.to_string();
    ASSERT_TRUE(received.value.has_value());
    EXPECT_EQ(received.value->body, "ping");
    EXPECT_EQ(received.value->header.at("Content-Type"), "text/plain");
  }
  EXPECT_EQ(g_live_channels, 0);
}

TEST(Transport, RecvAfterThePeerClosesSendingReportsEndOfStream) {
  Instance<micro_transport_t> instance(create<LoopTransport, micro_transport_t>());
  auto dialed = micro::Transport(instance.handle()).dial("peer:1");
  ASSERT_TRUE(dialed.ok());
  ASSERT_TRUE(dialed.value.close_send().ok());
  const auto end = dialed.value.recv();
  EXPECT_TRUE(end.ok()) << end.error.to_string();
  EXPECT_FALSE(end.value.has_value());
}

TEST(Transport, SocketThatCompletesThenThrowsCallsTheCallbackExactlyOnce) {
  Instance<micro_transport_t> instance(create<LoopTransport, micro_transport_t>());
  auto dialed = micro::Transport(instance.handle()).dial("peer:1");
  ASSERT_TRUE(dialed.ok());
  int calls = 0;
  Error seen = Error::internal("never called");
  dialed.value.send(Message{{}, "complete-then-throw"}, [&](const Error& e) {
    ++calls;
    seen = e;
  });
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(seen.ok()) << seen.to_string();
}

TEST(Transport, SocketThatThrowsBeforeCompletingGivesTheCaller500) {
  Instance<micro_transport_t> instance(create<LoopTransport, micro_transport_t>());
  auto dialed = micro::Transport(instance.handle()).dial("peer:1");
  ASSERT_TRUE(dialed.ok());
  const Error error = dialed.value.send(Message{{}, "throw"});
  EXPECT_EQ(error.code(), 500);
  EXPECT_NE(error.detail().find("send exploded"), std::string::npos);
}

TEST(Transport, DialThatThrowsGivesTheCallerTheMessageAndNoSocket) {
  Instance<micro_transport_t> instance(create<LoopTransport, micro_transport_t>());
  const auto dialed = micro::Transport(instance.handle()).dial("throw");
  EXPECT_EQ(dialed.error.code(), 500);
  EXPECT_NE(dialed.error.detail().find("no route to throw"), std::string::npos);
  EXPECT_FALSE(dialed.value.valid());
}

TEST(Transport, SocketThatComesWithAnErrorIsDestroyedNotDelivered) {
  Instance<micro_transport_t> instance(create<LoopTransport, micro_transport_t>());
  const auto dialed = micro::Transport(instance.handle()).dial("refused");
  EXPECT_EQ(dialed.error.code(), 503);
  EXPECT_FALSE(dialed.value.valid());
  EXPECT_EQ(g_live_channels, 0);
}

TEST(Transport, DialCompletedTwiceDeliversOneSocketAndDestroysTheOther) {
  Instance<micro_transport_t> instance(create<LoopTransport, micro_transport_t>());
  int calls = 0;
  std::vector<micro::Socket> sockets;
  micro::Transport(instance.handle()).dial("twice", {}, [&](const Error& e, micro::Socket s) {
    ++calls;
    EXPECT_TRUE(e.ok());
    sockets.push_back(std::move(s));
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(g_live_channels, 1);
  sockets.clear();
  EXPECT_EQ(g_live_channels, 0);
}

TEST(Transport, ListenerAcceptsUntilItIsDestroyed) {
  Instance<micro_transport_t> instance(create<LoopTransport, micro_transport_t>());
  auto& loop = instance.plugin<LoopTransport>();
  std::vector<micro::Socket> accepted;
  {
    auto listened = micro::Transport(instance.handle())
                        .listen("127.0.0.1:0", [&](const Error& e, micro::Socket s) {
                          EXPECT_TRUE(e.ok());
                          accepted.push_back(std::move(s));
                        });
    ASSERT_TRUE(listened.ok()) << listened.error.to_string();
    EXPECT_EQ(listened.value.address(), "127.0.0.1:4242");
    loop.accept("10.0.0.2:5000");
    loop.accept("10.0.0.3:5000");
  }
  EXPECT_EQ(loop.listener, nullptr);
  loop.accept("10.0.0.4:5000");  // no listener: nothing happens
  ASSERT_EQ(accepted.size(), 2u);
  EXPECT_EQ(accepted[1].remote_address(), "10.0.0.3:5000");
  accepted.clear();
  EXPECT_EQ(g_live_channels, 0);
}

TEST(Transport, ListenFailureKeepsItsCode) {
  Instance<micro_transport_t> instance(create<LoopTransport, micro_transport_t>());
  const auto listened =
      micro::Transport(instance.handle()).listen("in-use", [](const Error&, micro::Socket) {});
  EXPECT_EQ(listened.error.code(), 409);
  EXPECT_EQ(listened.error.detail(), "in-use is in use");
  EXPECT_FALSE(listened.value.valid());
}

TEST(Transport, SocketReleasedToTheCallerIsDestroyedByTheVtable) {
  Instance<micro_transport_t> instance(create<LoopTransport, micro_transport_t>());
  auto dialed = micro::Transport(instance.handle()).dial("peer:1");
  ASSERT_TRUE(dialed.ok());
  const micro_socket_t raw = dialed.value.release();
  EXPECT_FALSE(dialed.value.valid());
  EXPECT_EQ(dialed.value.send(Message{}).code(), 400);
  EXPECT_EQ(g_live_channels, 1);
  raw.vtable->destroy(raw.self);
  EXPECT_EQ(g_live_channels, 0);
}

TEST(Transport, SocketOverAnOlderVtableReturns501ForWhatItLacks) {
  Instance<micro_transport_t> instance(create<LoopTransport, micro_transport_t>());
  auto dialed = micro::Transport(instance.handle()).dial("peer:1");
  ASSERT_TRUE(dialed.ok());
  const micro_socket_t raw = dialed.value.release();
  const auto old = truncated(raw.vtable, offsetof(micro_socket_vtable_t, recv));
  {
    micro::Socket socket(micro_socket_t{&old, raw.self});
    EXPECT_TRUE(socket.send(Message{{}, "kept"}).ok());
    EXPECT_EQ(socket.recv().error.code(), 501);
    EXPECT_EQ(socket.close_send().code(), 501);
    socket.close();
    EXPECT_EQ(socket.remote_address(), "");
  }
  EXPECT_EQ(g_live_channels, 0);  // destroy, the first member, was still there

  const auto no_listen =
      truncated(instance.handle().vtable, offsetof(micro_transport_vtable_t, listen));
  micro::Transport transport(micro_transport_t{&no_listen, instance.handle().self});
  EXPECT_EQ(transport.listen("x", [](const Error&, micro::Socket) {}).error.code(), 501);
  EXPECT_TRUE(transport.dial("peer:1").ok());
}

// ---- selector --------------------------------------------------------------------------------

class FirstNodeSelector : public micro::SelectorPlugin {
 public:
  explicit FirstNodeSelector(const micro::CreateContext&) {}

  void select(const std::string& service, const micro::SelectOptions& options,
              micro::NodeCallback done) override {
    last_strategy = options.strategy;
    if (service == "none") return done(Error::unavailable("no node of none is up"), {});
    const std::vector<micro::Node> nodes{{"n1", "127.0.0.1:1", {}},
                                         {"n2", "127.0.0.1:2", {{"zone", "a"}}}};
    for (const auto& node : nodes) {
      const auto& ex = options.exclude_node_ids;
      if (std::find(ex.begin(), ex.end(), node.id) != ex.end()) continue;
      done(Error{}, node);
      if (service == "complete-then-throw") throw std::runtime_error("thrown after selecting");
      return;
    }
    done(Error::not_found("every node of " + service + " was excluded"), {});
  }
  void mark(const std::string& service, const std::string& node_id, const Error& outcome) override {
    marks.push_back(service + "/" + node_id + "/" + std::to_string(outcome.code()));
  }
  void reset(const std::string& service) override { resets.push_back(service); }

  std::string last_strategy;
  std::vector<std::string> marks;
  std::vector<std::string> resets;
};

TEST(Selector, SelectSkipsExcludedNodesAndCarriesMetadata) {
  Instance<micro_selector_t> instance(create<FirstNodeSelector, micro_selector_t>());
  micro::Selector selector(instance.handle());
  const auto picked = selector.select("greeter", {"round_robin", {"n1"}});
  ASSERT_TRUE(picked.ok()) << picked.error.to_string();
  EXPECT_EQ(picked.value, (micro::Node{"n2", "127.0.0.1:2", {{"zone", "a"}}}));
  EXPECT_EQ(instance.plugin<FirstNodeSelector>().last_strategy, "round_robin");
  EXPECT_EQ(selector.select("greeter", {"", {"n1", "n2"}}).error.code(), 404);
  EXPECT_EQ(selector.select("none").error.code(), 503);
}

TEST(Selector, SelectorThatCompletesThenThrowsCallsTheCallbackExactlyOnce) {
  Instance<micro_selector_t> instance(create<FirstNodeSelector, micro_selector_t>());
  int calls = 0;
  micro::Selector(instance.handle())
      .select("complete-then-throw", {}, [&](const Error& e, const micro::Node& node) {
        ++calls;
        EXPECT_TRUE(e.ok());
        EXPECT_EQ(node.id, "n1");
      });
  EXPECT_EQ(calls, 1);
}

TEST(Selector, MarkAndResetReachThePlugin) {
  Instance<micro_selector_t> instance(create<FirstNodeSelector, micro_selector_t>());
  micro::Selector selector(instance.handle());
  EXPECT_TRUE(selector.mark("greeter", "n1", Error{}).ok());
  EXPECT_TRUE(selector.mark("greeter", "n2", Error::unavailable("down")).ok());
  EXPECT_TRUE(selector.reset("greeter").ok());
  const auto& plugin = instance.plugin<FirstNodeSelector>();
  EXPECT_EQ(plugin.marks, (std::vector<std::string>{"greeter/n1/0", "greeter/n2/503"}));
  EXPECT_EQ(plugin.resets, std::vector<std::string>{"greeter"});
}

TEST(Selector, WrapperOverAnOlderVtableReturns501ForWhatItLacks) {
  Instance<micro_selector_t> instance(create<FirstNodeSelector, micro_selector_t>());
  const auto old = truncated(instance.handle().vtable, offsetof(micro_selector_vtable_t, mark));
  micro::Selector selector(micro_selector_t{&old, instance.handle().self});
  EXPECT_TRUE(selector.select("greeter").ok());
  EXPECT_EQ(selector.mark("greeter", "n1", Error{}).code(), 501);
  EXPECT_EQ(selector.reset("greeter").code(), 501);
}

// ---- broker ----------------------------------------------------------------------------------

// Delivers in-process, synchronously: publish returns the first subscriber error.
class LocalBroker : public micro::BrokerPlugin {
 public:
  explicit LocalBroker(const micro::CreateContext&) {}

  void connect(micro::Done done) override {
    connected = true;
    done(Error{});
  }
  void disconnect(micro::Done done) override {
    connected = false;
    done(Error{});
  }
  void publish(const std::string& topic, Message message, micro::Done done) override {
    for (auto& [id, sub] : subscribers) {
      if (sub.topic != topic) continue;
      const Error error = sub.handler(topic, message);
      if (!error.ok()) return done(error);
    }
    done(Error{});
  }
  uint64_t subscribe(const std::string& topic, const micro::SubscribeOptions& options,
                     micro::BrokerHandler handler) override {
    if (topic.empty()) throw micro::Exception(Error::bad_request("subscribe: empty topic"));
    subscribers[++last_id] = {topic, options.queue, std::move(handler)};
    return last_id;
  }
  void unsubscribe(uint64_t id) override { subscribers.erase(id); }
  std::string_view address() const override { return "127.0.0.1:5555"; }

  struct Subscriber {
    std::string topic;
    std::string queue;
    micro::BrokerHandler handler;
  };
  std::map<uint64_t, Subscriber> subscribers;
  uint64_t last_id = 0;
  bool connected = false;
};

TEST(Broker, PublishReachesSubscribersUntilTheSubscriptionIsGone) {
  Instance<micro_broker_t> instance(create<LocalBroker, micro_broker_t>());
  micro::Broker broker(instance.handle());
  EXPECT_TRUE(broker.connect().ok());
  EXPECT_TRUE(instance.plugin<LocalBroker>().connected);
  EXPECT_EQ(broker.address(), "127.0.0.1:5555");
  std::vector<std::string> seen;
  {
    auto sub = broker.subscribe(
        "events",
        [&](std::string_view topic, const Message& m) {
          seen.push_back(std::string(topic) + ":" + m.body + ":" + m.header.at("k"));
          return Error{};
        },
        {"workers"});
    ASSERT_TRUE(sub.ok()) << sub.error.to_string();
    EXPECT_EQ(instance.plugin<LocalBroker>().subscribers.begin()->second.queue, "workers");
    EXPECT_TRUE(broker.publish("events", Message{{{"k", "v"}}, "one"}).ok());
  }
  EXPECT_TRUE(instance.plugin<LocalBroker>().subscribers.empty());
  EXPECT_TRUE(broker.publish("events", Message{{{"k", "v"}}, "two"}).ok());
  EXPECT_EQ(seen, std::vector<std::string>{"events:one:v"});
  EXPECT_TRUE(broker.disconnect().ok());
}

TEST(Broker, SubscriberErrorsAndExceptionsGoBackToThePublisher) {
  Instance<micro_broker_t> instance(create<LocalBroker, micro_broker_t>());
  micro::Broker broker(instance.handle());
  auto refusing = broker.subscribe(
      "refuse", [](std::string_view, const Message&) { return Error(429, "slow down"); });
  auto throwing = broker.subscribe("throw", [](std::string_view, const Message&) -> Error {
    throw std::runtime_error("subscriber exploded");
  });
  ASSERT_TRUE(refusing.ok() && throwing.ok());
  const Error refused = broker.publish("refuse", Message{});
  EXPECT_EQ(refused.code(), 429);
  EXPECT_EQ(refused.detail(), "slow down");
  const Error thrown = broker.publish("throw", Message{});
  EXPECT_EQ(thrown.code(), 500);
  EXPECT_NE(thrown.detail().find("subscriber exploded"), std::string::npos);
}

TEST(Broker, SubscribeFailureKeepsItsCodeAndReturnsNoSubscription) {
  Instance<micro_broker_t> instance(create<LocalBroker, micro_broker_t>());
  const auto sub =
      micro::Broker(instance.handle()).subscribe("", [](std::string_view, const Message&) {
        return Error{};
      });
  EXPECT_EQ(sub.error.code(), 400);
  EXPECT_FALSE(sub.value.active());
}

TEST(Broker, WrapperOverAnOlderVtableReturns501ForWhatItLacks) {
  Instance<micro_broker_t> instance(create<LocalBroker, micro_broker_t>());
  const auto old = truncated(instance.handle().vtable, offsetof(micro_broker_vtable_t, publish));
  micro::Broker broker(micro_broker_t{&old, instance.handle().self});
  EXPECT_TRUE(broker.connect().ok());
  EXPECT_EQ(broker.publish("t", Message{}).code(), 501);
  EXPECT_EQ(
      broker.subscribe("t", [](std::string_view, const Message&) { return Error{}; }).error.code(),
      501);
  EXPECT_EQ(broker.address(), "");
}

// ---- client ----------------------------------------------------------------------------------

using EchoStream = EchoChannel<micro::StreamImpl>;
class CancellableEchoStream : public EchoStream {
 public:
  void cancel() override {}
};

// Answers every call with the request it saw, written into the response's header.
class EchoClient : public micro::ClientPlugin {
 public:
  explicit EchoClient(const micro::CreateContext&) {}
  ~EchoClient() override {
    if (worker_.joinable()) worker_.join();
  }

  void call(micro::Request request, const micro::CallOptions& options,
            micro::ResponseCallback done) override {
    if (request.endpoint == "Throw.Now") throw std::runtime_error("client exploded");
    if (request.endpoint == "Reply.Then.Throw") {
      done(Error{}, Message{{}, "first"});
      throw std::runtime_error("thrown after replying");
    }
    if (request.endpoint == "Other.Thread") {
      worker_ = std::thread([done, body = request.body] { done(Error{}, Message{{}, body}); });
      return;
    }
    Message response;
    response.header = {
        {"service", request.service},
        {"endpoint", request.endpoint},
        {"content_type", request.content_type},
        {"accept", request.accept},
        {"request_schema", request.request_schema ? request.request_schema->message_name : "-"},
        {"response_schema", request.response_schema ? request.response_schema->message_name : "-"},
        {"timeout_ms", std::to_string(options.timeout_ms)},
        {"retries", options.retries ? std::to_string(*options.retries) : "default"},
        {"idempotent", options.idempotent ? "yes" : "no"},
        {"address", options.address}};
    for (const auto& [key, value] : request.metadata) response.header["md-" + key] = value;
    response.body = std::move(request.body);
    done(Error{}, std::move(response));
  }
  void stream(micro::Request request, const micro::CallOptions&,
              micro::StreamImplCallback done) override {
    if (request.endpoint == "Refuse.Stream") return done(Error(403, "streams refused"), nullptr);
    done(Error{}, std::make_unique<CancellableEchoStream>());
  }
  void publish(const std::string& topic, Message message, micro::Done done) override {
    published.push_back(topic + ":" + message.body);
    done(Error{});
  }

  std::vector<std::string> published;

 private:
  std::thread worker_;
};

TEST(Client, CallCarriesEveryRequestFieldAndOptionToThePlugin) {
  Instance<micro_client_t> instance(create<EchoClient, micro_client_t>());
  micro::Client client(instance.handle());
  micro::Request request;
  request.service = "greeter";
  request.endpoint = "Greeter.Hello";
  request.content_type = "application/json";
  request.accept = "application/protobuf";
  request.metadata = {{"trace", "t-1"}};
  request.body = std::string("{\"name\":\"bob\"}\0tail", 19);
  request.request_schema = std::make_shared<micro::Schema>(micro::Schema{"fds", "greeter.Request"});
  micro::CallOptions options;
  options.timeout_ms = 1500;
  options.retries = 2;
  options.idempotent = true;
  options.address = "127.0.0.1:9000";

  const auto response = client.call(request, options);
  ASSERT_TRUE(response.ok()) << response.error.to_string();
  const auto& h = response.value.header;
  EXPECT_EQ(response.value.body, request.body);
  EXPECT_EQ(h.at("service"), "greeter");
  EXPECT_EQ(h.at("endpoint"), "Greeter.Hello");
  EXPECT_EQ(h.at("content_type"), "application/json");
  EXPECT_EQ(h.at("accept"), "application/protobuf");
  EXPECT_EQ(h.at("request_schema"), "greeter.Request");
  EXPECT_EQ(h.at("response_schema"), "-");
  EXPECT_EQ(h.at("timeout_ms"), "1500");
  EXPECT_EQ(h.at("retries"), "2");
  EXPECT_EQ(h.at("idempotent"), "yes");
  EXPECT_EQ(h.at("address"), "127.0.0.1:9000");
  EXPECT_EQ(h.at("md-trace"), "t-1");

  EXPECT_EQ(client.call(request).value.header.at("retries"), "default");
}

TEST(Client, CallOptionsFromAnOlderCallerReadAsDefaults) {
  Instance<micro_client_t> instance(create<EchoClient, micro_client_t>());
  const micro_client_t h = instance.handle();
  micro_call_options_t old{};
  old.struct_size = offsetof(micro_call_options_t, retries);  // knew only timeout_ms
  old.timeout_ms = 7;
  std::string retries;
  const micro::Request request{"s", "E.P", "", "", {}, "", nullptr, nullptr};
  const micro::RequestView view(request);
  h.vtable->call(
      h.self, view.c(), &old,
      [](void* ctx, const micro_error_t*, const micro_message_t* response) {
        *static_cast<std::string*>(ctx) = micro::from_c(response).header.at("retries");
      },
      &retries);
  EXPECT_EQ(retries, "default");
}

TEST(Client, CallThatThrowsGivesTheCaller500WithTheMessage) {
  Instance<micro_client_t> instance(create<EchoClient, micro_client_t>());
  micro::Request request;
  request.endpoint = "Throw.Now";
  const auto response = micro::Client(instance.handle()).call(request);
  EXPECT_EQ(response.error.code(), 500);
  EXPECT_NE(response.error.detail().find("client exploded"), std::string::npos);
}

TEST(Client, CallThatRepliesThenThrowsCallsTheCallbackExactlyOnce) {
  Instance<micro_client_t> instance(create<EchoClient, micro_client_t>());
  micro::Request request;
  request.endpoint = "Reply.Then.Throw";
  int calls = 0;
  micro::Client(instance.handle()).call(request, {}, [&](const Error& e, Message m) {
    ++calls;
    EXPECT_TRUE(e.ok());
    EXPECT_EQ(m.body, "first");
  });
  EXPECT_EQ(calls, 1);
}

TEST(Client, BlockingCallWaitsForACompletionFromAnotherThread) {
  Instance<micro_client_t> instance(create<EchoClient, micro_client_t>());
  micro::Request request;
  request.endpoint = "Other.Thread";
  request.body = "later";
  const auto response = micro::Client(instance.handle()).call(request);
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response.value.body, "later");
}

TEST(Client, StreamIsOwnedByTheCallerAndEndsAfterCloseSend) {
  Instance<micro_client_t> instance(create<EchoClient, micro_client_t>());
  {
    auto opened = micro::Client(instance.handle()).stream(micro::Request{});
    ASSERT_TRUE(opened.ok()) << opened.error.to_string();
    micro::Stream stream = std::move(opened.value);
    EXPECT_EQ(g_live_channels, 1);
    ASSERT_TRUE(stream.send(Message{{}, "a"}).ok());
    ASSERT_TRUE(stream.send(Message{{}, "b"}).ok());
    ASSERT_TRUE(stream.close_send().ok());
    std::vector<std::string> bodies;
    for (;;) {
      auto next = stream.recv();
      ASSERT_TRUE(next.ok()) << next.error.to_string();
      if (!next.value) break;
      bodies.push_back(next.value->body);
    }
    EXPECT_EQ(bodies, (std::vector<std::string>{"a", "b"}));
    stream.cancel();
  }
  EXPECT_EQ(g_live_channels, 0);
}

TEST(Client, PublishReachesThePlugin) {
  Instance<micro_client_t> instance(create<EchoClient, micro_client_t>());
  EXPECT_TRUE(micro::Client(instance.handle()).publish("events", Message{{}, "x"}).ok());
  EXPECT_EQ(instance.plugin<EchoClient>().published, std::vector<std::string>{"events:x"});
}

TEST(Client, WrapperOverAnOlderVtableReturns501ForWhatItLacks) {
  Instance<micro_client_t> instance(create<EchoClient, micro_client_t>());
  const auto old = truncated(instance.handle().vtable, offsetof(micro_client_vtable_t, stream));
  micro::Client client(micro_client_t{&old, instance.handle().self});
  EXPECT_TRUE(client.call(micro::Request{}).ok());
  const auto opened = client.stream(micro::Request{});
  EXPECT_EQ(opened.error.code(), 501);
  EXPECT_FALSE(opened.value.valid());
  EXPECT_EQ(client.publish("t", Message{}).code(), 501);
}

// ---- server ----------------------------------------------------------------------------------

// What a reply was answered with.
struct ReplyRecord {
  int sends = 0;
  Error error;
  Message response;
};

class RecordingReply : public micro::ReplyImpl {
 public:
  explicit RecordingReply(std::shared_ptr<ReplyRecord> record) : record_(std::move(record)) {}
  void send(const Error& error, Message response) override {
    ++record_->sends;
    record_->error = error;
    record_->response = std::move(response);
  }
  bool cancelled() const override { return false; }

 private:
  std::shared_ptr<ReplyRecord> record_;
};

// Serves in-process: the test plays the network by calling serve().
class LocalServer : public micro::ServerPlugin {
 public:
  explicit LocalServer(const micro::CreateContext&) {}

  Error handle(micro::EndpointHandler handler) override {
    if (endpoints.count(handler.name) != 0)
      return Error::conflict("endpoint " + handler.name + " is already served");
    const std::string name = handler.name;
    endpoints.emplace(name, std::move(handler));
    return Error{};
  }
  Error subscribe(const std::string& topic, const micro::SubscribeOptions&,
                  micro::BrokerHandler handler) override {
    subscribers.emplace(topic, std::move(handler));
    return Error{};
  }
  void start(micro::Done done) override { done(Error{}); }
  void stop(micro::Done done) override { done(Error{}); }
  std::string_view address() const override { return "127.0.0.1:8080"; }

  // One call, as it would arrive from the network.
  std::shared_ptr<ReplyRecord> serve(const std::string& endpoint, micro::Request request) {
    auto record = std::make_shared<ReplyRecord>();
    micro::Reply reply(micro::to_handle(std::make_unique<RecordingReply>(record)));
    endpoints.at(endpoint).on_call(std::move(request), std::move(reply));
    return record;
  }

  std::map<std::string, micro::EndpointHandler> endpoints;
  std::map<std::string, micro::BrokerHandler> subscribers;
};

micro::Request request_with_body(std::string body) {
  micro::Request request;
  request.body = std::move(body);
  return request;
}

TEST(Server, HandlerAnswersACallThroughItsReply) {
  Instance<micro_server_t> instance(create<LocalServer, micro_server_t>());
  micro::Server server(instance.handle());
  micro::EndpointHandler hello;
  hello.name = "Greeter.Hello";
  hello.request_schema = std::make_shared<micro::Schema>(micro::Schema{"fds", "greeter.Request"});
  hello.metadata = {{"stream", "false"}};
  hello.flags = MICRO_ENDPOINT_IDEMPOTENT;
  hello.on_call = [](micro::Request request, micro::Reply reply) {
    EXPECT_FALSE(reply.cancelled());
    EXPECT_EQ(request.metadata.at("trace"), "t-1");
    reply.send(Message{{{"who", request.body}}, "hello " + request.body});
  };
  ASSERT_TRUE(server.handle(std::move(hello)).ok());

  auto& local = instance.plugin<LocalServer>();
  const auto& registered = local.endpoints.at("Greeter.Hello");
  EXPECT_EQ(registered.request_schema->message_name, "greeter.Request");
  EXPECT_EQ(registered.response_schema, nullptr);
  EXPECT_EQ(registered.metadata.at("stream"), "false");
  EXPECT_EQ(registered.flags, uint32_t{MICRO_ENDPOINT_IDEMPOTENT});
  EXPECT_FALSE(registered.on_stream);

  micro::Request request = request_with_body("bob");
  request.metadata = {{"trace", "t-1"}};
  const auto record = local.serve("Greeter.Hello", request);
  EXPECT_EQ(record->sends, 1);
  EXPECT_TRUE(record->error.ok()) << record->error.to_string();
  EXPECT_EQ(record->response.body, "hello bob");
  EXPECT_EQ(record->response.header.at("who"), "bob");
}

TEST(Server, HandlerThatSendsThenThrowsRepliesExactlyOnce) {
  Instance<micro_server_t> instance(create<LocalServer, micro_server_t>());
  micro::Server server(instance.handle());
  micro::EndpointHandler e;
  e.name = "E.P";
  e.on_call = [](micro::Request, micro::Reply reply) {
    EXPECT_TRUE(reply.send(Message{{}, "answered"}));
    EXPECT_FALSE(reply.fail(Error::internal("too late")));
    throw std::runtime_error("thrown after replying");
  };
  ASSERT_TRUE(server.handle(std::move(e)).ok());
  const auto record = instance.plugin<LocalServer>().serve("E.P", micro::Request{});
  EXPECT_EQ(record->sends, 1);
  EXPECT_TRUE(record->error.ok());
  EXPECT_EQ(record->response.body, "answered");
}

TEST(Server, HandlerThatThrowsGivesTheCaller500WithTheMessage) {
  Instance<micro_server_t> instance(create<LocalServer, micro_server_t>());
  micro::Server server(instance.handle());
  micro::EndpointHandler e;
  e.name = "E.P";
  e.on_call = [](micro::Request, micro::Reply) { throw std::runtime_error("handler exploded"); };
  ASSERT_TRUE(server.handle(std::move(e)).ok());
  const auto record = instance.plugin<LocalServer>().serve("E.P", micro::Request{});
  EXPECT_EQ(record->sends, 1);
  EXPECT_EQ(record->error.code(), 500);
  EXPECT_NE(record->error.detail().find("handler exploded"), std::string::npos);
}

TEST(Server, HandlerThatDropsItsReplyGivesTheCaller500) {
  Instance<micro_server_t> instance(create<LocalServer, micro_server_t>());
  micro::Server server(instance.handle());
  micro::EndpointHandler e;
  e.name = "E.P";
  e.on_call = [](micro::Request, micro::Reply) {};
  ASSERT_TRUE(server.handle(std::move(e)).ok());
  const auto record = instance.plugin<LocalServer>().serve("E.P", micro::Request{});
  EXPECT_EQ(record->sends, 1);
  EXPECT_EQ(record->error.code(), 500);
  EXPECT_EQ(record->error.detail(), "the handler finished without replying");
}

TEST(Server, HandlerMayKeepItsReplyAndAnswerLater) {
  Instance<micro_server_t> instance(create<LocalServer, micro_server_t>());
  micro::Server server(instance.handle());
  micro::Reply kept;
  micro::EndpointHandler e;
  e.name = "E.P";
  e.on_call = [&](micro::Request, micro::Reply reply) { kept = reply; };
  ASSERT_TRUE(server.handle(std::move(e)).ok());
  const auto record = instance.plugin<LocalServer>().serve("E.P", micro::Request{});
  EXPECT_EQ(record->sends, 0);
  EXPECT_TRUE(kept.fail(Error::timeout("gave up")));
  EXPECT_EQ(record->sends, 1);
  EXPECT_EQ(record->error.code(), 408);
  EXPECT_TRUE(kept.cancelled());  // answered
}

TEST(Server, StreamingHandlerOwnsItsStream) {
  Instance<micro_server_t> instance(create<LocalServer, micro_server_t>());
  micro::Server server(instance.handle());
  std::vector<std::string> bodies;
  micro::EndpointHandler chat;
  chat.name = "Greeter.Chat";
  chat.flags = MICRO_ENDPOINT_STREAMING;
  chat.on_stream = [&](micro::Request request, micro::Stream stream) {
    EXPECT_EQ(request.endpoint, "Greeter.Chat");
    ASSERT_TRUE(stream.send(Message{{}, "hi"}).ok());
    auto got = stream.recv();
    ASSERT_TRUE(got.ok() && got.value.has_value());
    bodies.push_back(got.value->body);
  };
  ASSERT_TRUE(server.handle(std::move(chat)).ok());
  auto& local = instance.plugin<LocalServer>();
  EXPECT_FALSE(local.endpoints.at("Greeter.Chat").on_call);
  micro::Request request;
  request.endpoint = "Greeter.Chat";
  local.endpoints.at("Greeter.Chat")
      .on_stream(request,
                 micro::Stream(micro::to_handle(std::make_unique<CancellableEchoStream>())));
  EXPECT_EQ(bodies, std::vector<std::string>{"hi"});
  EXPECT_EQ(g_live_channels, 0);  // the handler's stream was destroyed when it returned
}

TEST(Server, TakenEndpointNameIsRefusedWith409) {
  Instance<micro_server_t> instance(create<LocalServer, micro_server_t>());
  micro::Server server(instance.handle());
  micro::EndpointHandler e;
  e.name = "E.P";
  e.on_call = [](micro::Request, micro::Reply) {};
  ASSERT_TRUE(server.handle(e).ok());
  const Error again = server.handle(e);
  EXPECT_EQ(again.code(), 409);
  EXPECT_EQ(again.detail(), "endpoint E.P is already served");
  e.on_call = nullptr;
  EXPECT_EQ(server.handle(e).code(), 400);  // nothing to serve it with
}

TEST(Server, SubscriberRegisteredThroughTheServerReceivesMessages) {
  Instance<micro_server_t> instance(create<LocalServer, micro_server_t>());
  micro::Server server(instance.handle());
  std::string seen;
  ASSERT_TRUE(server
                  .subscribe("events",
                             [&](std::string_view topic, const Message& m) {
                               seen = std::string(topic) + ":" + m.body;
                               return Error(202, "accepted");
                             })
                  .ok());
  const Error answer =
      instance.plugin<LocalServer>().subscribers.at("events")("events", Message{{}, "x"});
  EXPECT_EQ(seen, "events:x");
  EXPECT_EQ(answer.code(), 202);
  EXPECT_TRUE(server.start().ok());
  EXPECT_EQ(server.address(), "127.0.0.1:8080");
  EXPECT_TRUE(server.stop().ok());
}

TEST(Server, WrapperOverAnOlderVtableReturns501ForWhatItLacks) {
  Instance<micro_server_t> instance(create<LocalServer, micro_server_t>());
  const auto old = truncated(instance.handle().vtable, offsetof(micro_server_vtable_t, start));
  micro::Server server(micro_server_t{&old, instance.handle().self});
  EXPECT_EQ(server.start().code(), 501);
  EXPECT_EQ(server.stop().code(), 501);
  EXPECT_EQ(server.address(), "");
  micro::EndpointHandler e;
  e.name = "E.P";
  e.on_call = [](micro::Request, micro::Reply) {};
  EXPECT_TRUE(server.handle(e).ok());
}

// ---- handler and service ---------------------------------------------------------------------

// Business logic as a module: registers in its constructor.
class GreeterHandler : public micro::HandlerPlugin {
 public:
  explicit GreeterHandler(const micro::CreateContext& ctx) : server_(ctx.deps().server) {
    micro::EndpointHandler hello;
    hello.name = "Greeter.Hello";
    hello.on_call = [](micro::Request request, micro::Reply reply) {
      reply.send(Message{{}, "hello " + request.body});
    };
    const Error error = server_.handle(std::move(hello));
    if (!error.ok()) throw micro::Exception(error);
  }

 private:
  micro::Server server_;
};

TEST(Handler, ModuleRegistersThroughItsDependenciesAndServesCalls) {
  EXPECT_EQ(micro::plugin<GreeterHandler>("h", "")->required_kinds,
            MICRO_KIND_BIT(MICRO_KIND_SERVER) | MICRO_KIND_BIT(MICRO_KIND_CLIENT));
  Instance<micro_server_t> server(create<LocalServer, micro_server_t>());
  micro_dependencies_t deps{};
  deps.struct_size = sizeof(deps);
  deps.server = server.handle();
  {
    Instance<micro_handler_t> handler(create<GreeterHandler, micro_handler_t>(&deps));
    const auto record =
        server.plugin<LocalServer>().serve("Greeter.Hello", request_with_body("ann"));
    EXPECT_EQ(record->response.body, "hello ann");

    // A second handler for the same endpoint fails in its constructor: the factory says why.
    const micro_plugin_t* plugin = micro::plugin<GreeterHandler>("h", "");
    const micro_create_args_t args{sizeof(args), nullptr, nullptr, nullptr, 0, &deps};
    void* self = nullptr;
    const Error error = micro::take_error(plugin->create(&args, &self));
    EXPECT_EQ(error.code(), 409);
    EXPECT_EQ(self, nullptr);
  }
  // The handler's boxes went with it: like a stopped server (the host stops it first), this one
  // must call nothing now.
  server.plugin<LocalServer>().endpoints.clear();
}

class TwoPhaseService : public micro::ServicePlugin {
 public:
  explicit TwoPhaseService(const micro::CreateContext&) {}
  void start(micro::Done done) override {
    done(Error{});
    throw std::runtime_error("thrown after starting");
  }
  void stop(micro::Done) override { throw micro::Exception(Error::unavailable("cannot stop")); }
};

TEST(Service, StartThatCompletesThenThrowsCallsTheCallbackExactlyOnce) {
  Instance<micro_service_instance_t> instance(create<TwoPhaseService, micro_service_instance_t>());
  micro::ServiceHandle service(instance.handle());
  int calls = 0;
  service.start([&](const Error& e) {
    ++calls;
    EXPECT_TRUE(e.ok()) << e.to_string();
  });
  EXPECT_EQ(calls, 1);
  const Error stopped = service.stop();
  EXPECT_EQ(stopped.code(), 503);
  EXPECT_EQ(stopped.detail(), "cannot stop");
}

TEST(Service, WrapperOverAnOlderVtableReturns501ForWhatItLacks) {
  Instance<micro_service_instance_t> instance(create<TwoPhaseService, micro_service_instance_t>());
  const auto old = truncated(instance.handle().vtable, offsetof(micro_service_vtable_t, stop));
  micro::ServiceHandle service(micro_service_instance_t{&old, instance.handle().self});
  EXPECT_EQ(service.stop().code(), 501);
  EXPECT_EQ(micro::ServiceHandle{}.start().code(), 501);
}

}  // namespace

TEST(Metadata, FromCKeepsEveryPairWhateverTheOrderAndTheLastOfARepeatedKeyWins) {
  // Keys in order (as MetadataView lists them) take the fast path; others are placed by a search.
  const micro_kv_t sorted[] = {{micro::to_c("a"), micro::to_c("1")},
                                          {micro::to_c("b"), micro::to_c("2")},
                                          {micro::to_c("c"), micro::to_c("3")}};
  EXPECT_EQ(micro::from_c(micro_metadata_t{sorted, 3}),
            (micro::Metadata{{"a", "1"}, {"b", "2"}, {"c", "3"}}));
  const micro_kv_t shuffled[] = {{micro::to_c("c"), micro::to_c("3")},
                                            {micro::to_c("a"), micro::to_c("1")},
                                            {micro::to_c("b"), micro::to_c("x")},
                                            {micro::to_c("b"), micro::to_c("2")}};
  EXPECT_EQ(micro::from_c(micro_metadata_t{shuffled, 4}),
            (micro::Metadata{{"a", "1"}, {"b", "2"}, {"c", "3"}}));
  const micro::Metadata original{{"content-type", "application/json"}, {"micro-id", "7"}};
  const micro::MetadataView view(original);
  EXPECT_EQ(micro::from_c(view.c()), original);
}

TEST(Metadata, FindValueReadsTheLastOfARepeatedKeyAsFromCDoes) {
  const micro_kv_t items[] = {{micro::to_c("b"), micro::to_c("x")},
                              {micro::to_c("a"), micro::to_c("1")},
                              {micro::to_c("b"), micro::to_c("2")}};
  const micro_metadata_t list{items, 3};
  EXPECT_EQ(micro::find_value(list, "b"), "2");
  EXPECT_EQ(micro::find_value(list, "b"), micro::from_c(list).at("b"));
  EXPECT_EQ(micro::find_value(list, "a"), "1");
  EXPECT_EQ(micro::find_item(list, "B"), nullptr) << "keys match exactly";
  EXPECT_EQ(micro::find_value(micro_metadata_t{nullptr, 0}, "a"), "");
}

TEST(Metadata, KvListSortsLikeAMapViewKeepingTheLastOfARepeatedKey) {
  // More entries than fit on the stack, in no order, one key three times.
  const std::vector<std::pair<std::string, std::string>> added = {
      {"k5", "5"}, {"k1", "1"}, {"dup", "first"}, {"k9", "9"}, {"k3", "3"}, {"dup", "second"},
      {"k7", "7"}, {"k2", "2"}, {"k8", "8"}, {"dup", "last"}, {"k4", "4"}};
  micro::KvList list;
  micro::Metadata expected;
  for (const auto& [key, value] : added) {
    list.add(key, value);
    expected.insert_or_assign(key, value);
  }
  list.sort_unique();
  const micro::MetadataView view(expected);
  const micro_metadata_t got = list.c(), want = view.c();
  ASSERT_EQ(got.count, want.count);
  for (size_t i = 0; i < got.count; ++i) {
    EXPECT_EQ(micro::to_view(got.items[i].key), micro::to_view(want.items[i].key)) << i;
    EXPECT_EQ(micro::to_view(got.items[i].value), micro::to_view(want.items[i].value)) << i;
  }
  micro::KvList many;  // past the insertion sort: keys in reverse, one repeated
  micro::Metadata many_expected;
  std::vector<std::string> keys, values;  // the list borrows them
  for (int i = 39; i >= 0; --i) keys.push_back("k" + std::to_string(100 + i));
  keys.push_back("k120");
  for (size_t i = 0; i < keys.size(); ++i)
    values.push_back(keys[i] + (i + 1 == keys.size() ? "-last" : ""));
  for (size_t i = 0; i < keys.size(); ++i) {
    many.add(keys[i], values[i]);
    many_expected.insert_or_assign(keys[i], values[i]);
  }
  many.sort_unique();
  EXPECT_EQ(many.size(), 40u);
  EXPECT_EQ(micro::from_c(many.c()), many_expected);
  EXPECT_TRUE(std::is_sorted(many.c().items, many.c().items + many.size(),
                             [](const micro_kv_t& a, const micro_kv_t& b) {
                               return micro::to_view(a.key) < micro::to_view(b.key);
                             }));
  micro::KvList small;  // on the stack
  small.add("b", "2");
  small.add("a", "1");
  small.add("b", "3");
  small.sort_unique();
  EXPECT_EQ(micro::from_c(small.c()), (micro::Metadata{{"a", "1"}, {"b", "3"}}));
  EXPECT_EQ(small.size(), 2u);
}

TEST(Client, CallViewHandsTheResponseAsAViewDirectlyOrThroughWrappers) {
  Instance<micro_client_t> instance(create<EchoClient, micro_client_t>());
  micro::Client client(instance.handle());
  micro::Request request;
  request.service = "greeter";
  request.endpoint = "Greeter.Hello";
  request.body = "bob";
  std::vector<std::string> seen;
  auto record = [&](const Error& error, const micro_message_t* response) {
    ASSERT_TRUE(error.ok()) << error.to_string();
    ASSERT_NE(response, nullptr);
    const Message m = micro::from_c(response);
    seen.push_back(m.header.at("endpoint") + ":" + m.body);
  };
  client.call_view(request, {}, record);
  int wrapped = 0;
  micro::Client with = client.with([&](micro::CallFunction next) -> micro::CallFunction {
    return [&, next](const micro::Request& r, const micro::CallOptions& o,
                     micro::ResponseCallback done) {
      ++wrapped;
      next(r, o, std::move(done));
    };
  });
  with.call_view(request, {}, record);
  EXPECT_EQ(seen, (std::vector<std::string>{"Greeter.Hello:bob", "Greeter.Hello:bob"}));
  EXPECT_EQ(wrapped, 1);
  request.endpoint = "Throw.Now";
  Error failed;
  client.call_view(request, {}, [&](const Error& error, const micro_message_t* response) {
    failed = error;
    EXPECT_EQ(response, nullptr);
  });
  EXPECT_EQ(failed.code(), 500);
}

TEST(Server, HandlerSharesItsEndpointsSchemaAndCopiesAnotherOne) {
  Instance<micro_server_t> instance(create<LocalServer, micro_server_t>());
  micro::Server server(instance.handle());
  const auto schema = std::make_shared<micro::Schema>(micro::Schema{"fds", "greeter.Request"});
  std::vector<std::shared_ptr<const micro::Schema>> seen;
  micro::EndpointHandler e;
  e.name = "E.P";
  e.request_schema = schema;
  e.on_call = [&](micro::Request request, micro::Reply reply) {
    seen.push_back(request.request_schema);
    // Answered from views, as a typed endpoint answers.
    const micro_kv_t header[] = {{micro::to_c("content-type"), micro::to_c("text/plain")}};
    EXPECT_TRUE(reply.send_c(micro_message_t{sizeof(micro_message_t), {header, 1},
                                             micro::to_c_bytes(request.body)}));
    EXPECT_FALSE(reply.send_c(micro_message_t{sizeof(micro_message_t), {nullptr, 0}, {}}));
  };
  ASSERT_TRUE(server.handle(std::move(e)).ok());
  auto& local = instance.plugin<LocalServer>();

  micro::Request same = request_with_body("one");  // an equal copy, as a server module holds
  same.request_schema = std::make_shared<micro::Schema>(*schema);
  const auto first = local.serve("E.P", same);
  micro::Request other = request_with_body("two");
  other.request_schema = std::make_shared<micro::Schema>(micro::Schema{"fds2", "other.Request"});
  const auto second = local.serve("E.P", other);

  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].get(), schema.get());
  ASSERT_NE(seen[1], nullptr);
  EXPECT_NE(seen[1].get(), schema.get());
  EXPECT_EQ(seen[1]->file_descriptor_set, "fds2");
  EXPECT_EQ(seen[1]->message_name, "other.Request");
  EXPECT_EQ(first->sends, 1);
  EXPECT_EQ(first->response.body, "one");
  EXPECT_EQ(first->response.header.at("content-type"), "text/plain");
  EXPECT_EQ(second->response.body, "two");
}
