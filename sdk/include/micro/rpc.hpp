// Typed RPC over protobuf messages: what the code protoc-gen-micro generates is built on, so that
// the generated code stays a thin, readable layer. Users meet the stream types (ClientReader,
// ServerWriter, ...); micro::rpc:: is the plumbing.
//
// Conventions every typed endpoint follows:
// - bodies are protobuf binary with Content-Type "application/protobuf", and every request names
//   its request and response schemas, so a server whose caller speaks JSON can transcode;
// - a handler always receives protobuf binary (the server module decodes the wire form first)
//   and answers in protobuf binary;
// - a stream that fails sends an error frame: a message whose `micro-error` header holds the error
//   as JSON (see docs/rpc-wire.md); the client's typed readers turn it back into the error.
//
// Threads: every blocking call here (send, recv, a blocking client call) waits for a module's
// completion, so never call one on a module's callback thread. A unary handler runs on the thread
// the server module calls it on (keep it short, or the server has fewer threads to serve with); a
// streaming handler runs on a thread of its own, since its reads and writes block.
//
// Needs protobuf: link protobuf::libprotobuf.
#pragma once

#include <google/protobuf/message.h>
#include <google/protobuf/message_lite.h>
#include <google/protobuf/util/json_util.h>

#include <atomic>
#include <cctype>
#include <climits>
#include <exception>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "micro/client.hpp"
#include "micro/codec.hpp"
#include "micro/content_type.hpp"
#include "micro/error_json.hpp"
#include "micro/server.hpp"

namespace micro {
namespace rpc {

inline constexpr std::string_view kProtobufContentType = "application/protobuf";
inline constexpr std::string_view kJsonContentType = "application/json";
// Header names in lower case, as received messages carry them (docs/rpc-wire.md) and as the
// server module reads them.
inline constexpr std::string_view kContentTypeHeader = "content-type";
inline constexpr std::string_view kErrorHeader = "micro-error";

// What generated code knows about one method. The views point at static strings.
struct Method {
  std::string_view endpoint;  // "Greeter.Hello"
  std::string_view request;   // full message name, "greeter.Request"
  std::string_view response;  // "greeter.Response"
};

// Finds the schema of a message by full name; generated code passes <file>_proto_schema.
using SchemaLookup = std::shared_ptr<const Schema> (*)(std::string_view full_name);

// The value of header `name`, matched regardless of case (received headers are lower-case);
// nullptr when absent.
inline const std::string* find_header(const Metadata& header, std::string_view name) {
  for (const auto& [key, value] : header) {
    if (key.size() != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < key.size() && same; ++i)
      same = std::tolower(static_cast<unsigned char>(key[i])) ==
             std::tolower(static_cast<unsigned char>(name[i]));
    if (same) return &value;
  }
  return nullptr;
}

// ---- schemas -------------------------------------------------------------------------------

// The schemas of one .proto file's messages: its FileDescriptorSet with each message's name,
// made on first use and then shared. Generated code keeps one per file. Thread-safe.
class SchemaTable {
 public:
  // `descriptor_set` and `names` must outlive the table (generated code passes static data).
  SchemaTable(std::string_view descriptor_set, std::initializer_list<std::string_view> names)
      : descriptor_set_(descriptor_set), names_(names) {}

  // The schema of `full_name`; nullptr for a name the table was not given.
  std::shared_ptr<const Schema> find(std::string_view full_name) const {
    bool known = false;
    for (std::string_view name : names_) known = known || name == full_name;
    if (!known) return nullptr;
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = made_.find(full_name);
    if (it == made_.end()) {
      auto schema = std::make_shared<const Schema>(
          Schema{std::string(descriptor_set_), std::string(full_name)});
      it = made_.emplace(std::string(full_name), std::move(schema)).first;
    }
    return it->second;
  }

 private:
  std::string_view descriptor_set_;
  std::vector<std::string_view> names_;
  mutable std::mutex mutex_;
  mutable std::map<std::string, std::shared_ptr<const Schema>, std::less<>> made_;
};

// ---- messages ------------------------------------------------------------------------------

// Names a message in an error: "Greeter.Hello" + ": the response". Two views, joined only when
// there is an error to report (a stream's every message would otherwise build the string).
class What {
 public:
  What(std::string_view head, std::string_view tail = {}) noexcept : head_(head), tail_(tail) {}
  What(const std::string& head) noexcept : head_(head) {}
  What(const char* head) noexcept : head_(head) {}
  std::string str() const { return std::string(head_).append(tail_); }

 private:
  std::string_view head_, tail_;
};

// Protobuf binary for `message`; fails when a proto2 required field is unset. `what` names the
// message in the error ("Greeter.Hello: the response").
inline Result<std::string> serialize(const google::protobuf::MessageLite& message, What what) {
  Result<std::string> out;
  if (!message.IsInitialized()) {
    out.error =
        Error::bad_request(what.str() + " (" + message.GetTypeName() +
                           ") lacks required fields: " + message.InitializationErrorString());
  } else if (!message.SerializePartialToString(&out.value)) {
    out.error = Error::internal(what.str() + " (" + message.GetTypeName() +
                                ") does not serialize (over 2 GiB?)");
  }
  return out;
}

// Parses protobuf binary into `out`; a 400 naming the message type when it does not parse.
inline Error parse(std::string_view bytes, google::protobuf::MessageLite& out, What what) {
  if (bytes.size() > static_cast<size_t>(INT_MAX)) {
    return Error(413, what.str() + " is over 2 GiB, more than protobuf can parse");
  }
  if (!out.ParsePartialFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Error::bad_request(what.str() + " is not a valid " + out.GetTypeName() + " (" +
                              std::to_string(bytes.size()) + " bytes of " +
                              std::string(kProtobufContentType) + ")");
  }
  if (!out.IsInitialized()) {
    return Error::bad_request(what.str() + " (" + out.GetTypeName() +
                              ") lacks required fields: " + out.InitializationErrorString());
  }
  return Error{};
}

// A message body in protobuf binary, labelled as such.
inline Result<Message> to_message(const google::protobuf::MessageLite& message, What what) {
  Result<std::string> body = serialize(message, what);
  Result<Message> out;
  out.error = std::move(body.error);
  out.value.header.emplace(kContentTypeHeader, kProtobufContentType);
  out.value.body = std::move(body.value);
  return out;
}

// Runs a handler: its error, or the error of the exception it threw (a micro::Exception keeps
// its error; any other becomes a 500 whose detail is the exception's message).
template <class F>
Error run_handler(F&& handler) noexcept {
  try {
    return handler();
  } catch (const Exception& e) {
    return e.error();
  } catch (const std::exception& e) {
    return Error::internal(e.what());
  } catch (...) {
    return Error::internal("the handler threw an exception of unknown type");
  }
}

// ---- errors in streams ---------------------------------------------------------------------

// The frame that ends a stream with `error`.
inline Message error_frame(const Error& error) {
  Message out;
  out.header.emplace(kErrorHeader, micro::error_to_json(error));
  return out;
}

// The error an error frame carries; ok for an ordinary message.
inline Error frame_error(const Message& message) {
  const std::string* json = find_header(message.header, kErrorHeader);
  return json == nullptr ? Error{} : micro::error_from_json(*json, MICRO_CODE_INTERNAL);
}

}  // namespace rpc

// ---- client streams ------------------------------------------------------------------------

namespace rpc::detail {

// What every typed client stream shares: the owned stream, or the error that kept it from opening
// (every operation then returns that error).
class ClientStreamBase {
 public:
  ClientStreamBase() = default;
  ClientStreamBase(Stream stream, Error error, std::string_view endpoint)
      : stream_(std::move(stream)), error_(std::move(error)), endpoint_(endpoint) {}

  // Aborts the stream: pending and later operations fail with 499. Any thread.
  void cancel() noexcept { stream_.cancel(); }

 protected:
  Error send_message(const google::protobuf::MessageLite& message) {
    if (!error_.ok()) return error_;
    Result<std::string> body = serialize(message, {endpoint_, ": the request"});
    if (!body.ok()) return body.error;
    return stream_.send(Message{{}, std::move(body.value)});
  }

  template <class Resp>
  Result<std::optional<Resp>> recv_message() {
    Result<std::optional<Resp>> out;
    if (!error_.ok()) {
      out.error = error_;
      return out;
    }
    Result<std::optional<Message>> next = stream_.recv();
    if (!next.ok()) {
      out.error = std::move(next.error);
    } else if (next.value) {
      out.error = frame_error(*next.value);
      if (out.error.ok()) {
        Resp response;
        out.error = parse(next.value->body, response, {endpoint_, ": a response"});
        if (out.error.ok()) out.value = std::move(response);
      }
    }
    return out;
  }

  Error close() { return error_.ok() ? stream_.close_send() : error_; }

 private:
  Stream stream_;
  Error error_;
  std::string_view endpoint_;
};

}  // namespace rpc::detail

// The responses of a server-streaming method. Move-only; destroying it before the end cancels
// the stream. Blocking; one thread at a time.
template <class Resp>
class ClientReader : public rpc::detail::ClientStreamBase {
 public:
  using ClientStreamBase::ClientStreamBase;

  // The next response; nullopt once the server has sent them all.
  Result<std::optional<Resp>> recv() { return recv_message<Resp>(); }
};

// The requests of a client-streaming method, then its one response. Move-only; destroying it
// before close_and_recv() cancels the stream. Blocking; one thread at a time.
template <class Req, class Resp>
class ClientWriter : public rpc::detail::ClientStreamBase {
 public:
  using ClientStreamBase::ClientStreamBase;

  // Sends one request. An error means the stream is broken; close_and_recv() may say why.
  Error send(const Req& request) { return send_message(request); }

  // Tells the server no more requests follow and waits for its response.
  Result<Resp> close_and_recv() {
    Result<Resp> out;
    out.error = close();
    if (!out.ok()) return out;
    Result<std::optional<Resp>> response = recv_message<Resp>();
    if (!response.ok()) {
      out.error = std::move(response.error);
    } else if (!response.value) {
      out.error = Error::internal("the server ended the stream without a response");
    } else {
      out.value = std::move(*response.value);
    }
    return out;
  }
};

// Both directions of a bidirectional method, at once: one thread may send while another
// receives. Move-only; destroying it cancels the stream if still open.
template <class Req, class Resp>
class ClientReaderWriter : public rpc::detail::ClientStreamBase {
 public:
  using ClientStreamBase::ClientStreamBase;

  // Sends one request. An error means the stream is broken; recv() may say why.
  Error send(const Req& request) { return send_message(request); }
  // The next response; nullopt once the server has finished.
  Result<std::optional<Resp>> recv() { return recv_message<Resp>(); }
  // Tells the server no more requests follow; responses keep coming.
  Error close_send() { return close(); }
};

// ---- server streams ------------------------------------------------------------------------

// A streaming handler's incoming requests. Borrowed for the handler's call; blocking.
template <class Req>
class ServerReader {
 public:
  ServerReader(Stream& stream, std::string_view endpoint) : stream_(stream), endpoint_(endpoint) {}
  ServerReader(const ServerReader&) = delete;
  ServerReader& operator=(const ServerReader&) = delete;

  // The next request; nullopt once the caller has sent them all. A request that does not parse
  // is a 400: return it from the handler.
  Result<std::optional<Req>> recv() {
    Result<std::optional<Req>> out;
    Result<std::optional<Message>> next = stream_.recv();
    if (!next.ok()) {
      out.error = std::move(next.error);
    } else if (next.value) {
      Req request;
      out.error = rpc::parse(next.value->body, request, {endpoint_, ": a request"});
      if (out.error.ok()) out.value = std::move(request);
    }
    return out;
  }

 private:
  Stream& stream_;
  std::string_view endpoint_;
};

// A streaming handler's outgoing responses. Borrowed for the handler's call; blocking.
template <class Resp>
class ServerWriter {
 public:
  ServerWriter(Stream& stream, std::string_view endpoint) : stream_(stream), endpoint_(endpoint) {}
  ServerWriter(const ServerWriter&) = delete;
  ServerWriter& operator=(const ServerWriter&) = delete;

  // Sends one response and waits until it is written. An error means the caller is gone (or the
  // response lacks required fields): return it from the handler.
  Error send(const Resp& response) {
    Result<std::string> body = rpc::serialize(response, {endpoint_, ": a response"});
    if (!body.ok()) return body.error;
    return stream_.send(Message{{}, std::move(body.value)});
  }

 private:
  Stream& stream_;
  std::string_view endpoint_;
};

// Both directions of a bidirectional handler: one thread may send while another receives.
template <class Req, class Resp>
class ServerReaderWriter : public ServerReader<Req>, public ServerWriter<Resp> {
 public:
  ServerReaderWriter(Stream& stream, std::string_view endpoint)
      : ServerReader<Req>(stream, endpoint), ServerWriter<Resp>(stream, endpoint) {}
};

namespace rpc {

// ---- client stub ---------------------------------------------------------------------------

// The engine of a generated client: builds typed requests and turns bodies back into messages.
// Copyable; holds a micro::Client, which does not own the client instance (keep the stack alive).
class Stub {
 public:
  Stub(Client client, std::string service, Metadata metadata, SchemaLookup schemas)
      : client_(client),
        service_(std::move(service)),
        metadata_(std::move(metadata)),
        schemas_(schemas) {}

  // The untyped request for `method`, with both schemas and the stub's metadata.
  Request request_for(const Method& method) const {
    Request out;
    out.service = service_;
    out.endpoint = std::string(method.endpoint);
    out.content_type = std::string(kProtobufContentType);
    out.accept = std::string(kProtobufContentType);
    out.metadata = metadata_;
    out.request_schema = schemas_(method.request);
    out.response_schema = schemas_(method.response);
    return out;
  }

  // A unary call; blocks.
  template <class Resp>
  Result<Resp> call(const Method& method, const google::protobuf::MessageLite& request,
                    const CallOptions& options) const {
    Result<Resp> out;
    Result<Request> typed = typed_request(method, request);
    if (!typed.ok()) {
      out.error = std::move(typed.error);
      return out;
    }
    // The response is parsed where it arrives, from the client's view; the waiter's hand-over
    // publishes `out.value` to this thread.
    micro::detail::Waiter<Error> waiter;
    client_.call_view(typed.value, options,
                      [&](const Error& error, const micro_message_t* response) {
                        Error result = error;
                        const Error thrown = micro::detail::guarded([&] {
                          if (result.ok()) result = parse_response(method, response, out.value);
                        });
                        waiter.set(thrown.ok() ? std::move(result) : thrown);
                      });
    out.error = waiter.wait();
    return out;
  }

  // A unary call; `done` runs once, on any thread (a client module thread: don't block in it).
  template <class Resp>
  void call(const Method& method, const google::protobuf::MessageLite& request,
            const CallOptions& options, std::function<void(const Error&, Resp)> done) const {
    Result<Request> typed = typed_request(method, request);
    if (!typed.ok()) return done(typed.error, Resp{});
    client_.call_view(typed.value, options,
                      [method, done = std::move(done)](const Error& error,
                                                       const micro_message_t* response) {
                        Resp out;
                        const Error failure =
                            error.ok() ? parse_response(method, response, out) : error;
                        done(failure, failure.ok() ? std::move(out) : Resp{});
                      });
  }

  // Opens a server-streaming call: sends the one request, then the reader yields responses.
  template <class Resp>
  ClientReader<Resp> server_stream(const Method& method,
                                   const google::protobuf::MessageLite& request,
                                   const CallOptions& options) const {
    Result<std::string> body = serialize(request, {method.endpoint, ": the request"});
    if (!body.ok()) return ClientReader<Resp>(Stream{}, std::move(body.error), method.endpoint);
    Result<Stream> opened = client_.stream(request_for(method), options);
    Error error = std::move(opened.error);
    if (error.ok()) error = opened.value.send(Message{{}, std::move(body.value)});
    if (error.ok()) error = opened.value.close_send();
    return ClientReader<Resp>(std::move(opened.value), std::move(error), method.endpoint);
  }

  // Opens a client-streaming or bidirectional call (T: ClientWriter or ClientReaderWriter).
  template <class T>
  T open_stream(const Method& method, const CallOptions& options) const {
    Result<Stream> opened = client_.stream(request_for(method), options);
    return T(std::move(opened.value), std::move(opened.error), method.endpoint);
  }

 private:
  Result<Request> typed_request(const Method& method,
                                const google::protobuf::MessageLite& request) const {
    Result<Request> out;
    Result<std::string> body = serialize(request, {method.endpoint, ": the request"});
    out.error = std::move(body.error);
    if (!out.ok()) return out;
    out.value = request_for(method);
    out.value.body = std::move(body.value);
    return out;
  }

  // `response` is the client's view (NULL: an empty response).
  static Error parse_response(const Method& method, const micro_message_t* response,
                              google::protobuf::MessageLite& out) {
    const std::string_view body =
        response != nullptr ? to_view(read_struct(response).body) : std::string_view();
    Error error = parse(body, out, {method.endpoint, ": the response"});
    // The server answered, but not with what the schema says: not the caller's fault.
    if (!error.ok()) error = Error::internal(error.detail());
    return error;
  }

  Client client_;
  std::string service_;
  Metadata metadata_;
  SchemaLookup schemas_;
};

// ---- handler registration ------------------------------------------------------------------

// Runs each streaming handler on a thread of its own. A blocking handler must not hold the server
// module's thread: its stream's reads and writes complete on the module's threads, so a few such
// handlers would take them all. Threads that have finished are joined as new ones start; the rest
// when this is destroyed (with the endpoints, after the server has stopped), which waits for
// their handlers to return: a server ends its streams when it stops, so reads and writes fail.
class HandlerThreads {
 public:
  HandlerThreads() = default;
  HandlerThreads(const HandlerThreads&) = delete;
  HandlerThreads& operator=(const HandlerThreads&) = delete;
  ~HandlerThreads() {
    std::vector<Worker> workers;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      workers.swap(workers_);
    }
    for (Worker& worker : workers) {
      // Destroyed from a handler's own thread (it held the last Server): that thread is ending.
      if (worker.thread.get_id() == std::this_thread::get_id()) {
        worker.thread.detach();
      } else {
        worker.thread.join();
      }
    }
  }

  void run(std::function<void()> work) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = workers_.begin(); it != workers_.end();) {
      if (*it->done) {
        it->thread.join();  // done: it is returning, if it has not already
        it = workers_.erase(it);
      } else {
        ++it;
      }
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    workers_.push_back(Worker{std::thread([work = std::move(work), done] {
                                work();
                                *done = true;
                              }),
                              done});
  }

 private:
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::mutex mutex_;
  std::vector<Worker> workers_;
};

// The engine of a generated Register<Service>Handler: one endpoint per method, each calling the
// handler's virtual through a member pointer. Keeps the first error; later adds are skipped.
template <class Handler>
class Registrar {
 public:
  Registrar(Server server, std::shared_ptr<Handler> handler, SchemaLookup schemas,
            std::string_view what)
      : server_(std::move(server)), handler_(std::move(handler)), schemas_(schemas) {
    if (handler_ == nullptr)
      error_ = Error::bad_request(std::string(what) + ": the handler is null");
  }

  // The first error, or ok once every method was added.
  const Error& error() const noexcept { return error_; }

  // Unary: parse the request, call the handler, reply with its response or its error.
  template <class Req, class Resp>
  void unary(const Method& method, Error (Handler::*fn)(const Req&, Resp&)) {
    add(method, 0, [handler = handler_, fn, method](Request request, Reply reply) {
      Req in;
      Resp out;
      Error error = parse(request.body, in, {method.endpoint, ": the request"});
      if (error.ok()) error = run_handler([&] { return ((*handler).*fn)(in, out); });
      Result<std::string> body;
      if (error.ok()) {
        body = serialize(out, {method.endpoint, ": the response"});
        error = body.error.ok() ? Error{} : Error::internal(body.error.detail());
      }
      if (error.ok()) {
        // As to_message() labels it, sent as views: no Message is built per call.
        const micro_kv_t header[] = {{to_c(kContentTypeHeader), to_c(kProtobufContentType)}};
        reply.send_c(micro_message_t{sizeof(micro_message_t), {header, 1},
                                     to_c_bytes(body.value)});
      } else {
        reply.fail(error);
      }
    });
  }

  // Server streaming: the first message is the request; then the handler writes responses.
  template <class Req, class Resp>
  void server_stream(const Method& method, Error (Handler::*fn)(const Req&, ServerWriter<Resp>&)) {
    add_stream(method, [handler = handler_, fn, method](Stream& stream) {
      Result<std::optional<Message>> first = stream.recv();
      if (!first.ok()) return first.error;
      if (!first.value) {
        return Error::bad_request(std::string(method.endpoint) +
                                  ": the stream ended before the request");
      }
      Req in;
      Error error = parse(first.value->body, in, {method.endpoint, ": the request"});
      if (!error.ok()) return error;
      ServerWriter<Resp> writer(stream, method.endpoint);
      return run_handler([&] { return ((*handler).*fn)(in, writer); });
    });
  }

  // Client streaming: the handler reads the requests, then its response is sent.
  template <class Req, class Resp>
  void client_stream(const Method& method, Error (Handler::*fn)(ServerReader<Req>&, Resp&)) {
    add_stream(method, [handler = handler_, fn, method](Stream& stream) {
      ServerReader<Req> reader(stream, method.endpoint);
      Resp out;
      Error error = run_handler([&] { return ((*handler).*fn)(reader, out); });
      if (!error.ok()) return error;
      Result<std::string> body = serialize(out, {method.endpoint, ": the response"});
      if (!body.ok()) return Error::internal(body.error.detail());
      return stream.send(Message{{}, std::move(body.value)});
    });
  }

  // Bidirectional: the handler reads and writes as it likes.
  template <class Req, class Resp>
  void bidi_stream(const Method& method, Error (Handler::*fn)(ServerReaderWriter<Req, Resp>&)) {
    add_stream(method, [handler = handler_, fn, method](Stream& stream) {
      ServerReaderWriter<Req, Resp> both(stream, method.endpoint);
      return run_handler([&] { return ((*handler).*fn)(both); });
    });
  }

 private:
  void add(const Method& method, uint32_t flags, CallHandler on_call,
           StreamHandler on_stream = {}) {
    if (!error_.ok()) return;
    EndpointHandler endpoint;
    endpoint.name = std::string(method.endpoint);
    endpoint.request_schema = schemas_(method.request);
    endpoint.response_schema = schemas_(method.response);
    endpoint.flags = flags;
    endpoint.on_call = std::move(on_call);
    endpoint.on_stream = std::move(on_stream);
    error_ = server_.handle(std::move(endpoint));
  }

  // A streaming endpoint: runs `serve` on the stream, on a thread of its own, then ends the
  // stream with an error frame if it failed, and a half-close.
  template <class Serve>
  void add_stream(const Method& method, Serve serve) {
    add(method, MICRO_ENDPOINT_STREAMING, {}, [serve, threads = threads_](Request, Stream stream) {
      auto owned = std::make_shared<Stream>(std::move(stream));
      threads->run([serve, owned] {
        const Error error = serve(*owned);
        if (!error.ok()) (void)owned->send(error_frame(error));
        (void)owned->close_send();
      });
    });
  }

  Server server_;
  std::shared_ptr<Handler> handler_;
  SchemaLookup schemas_;
  std::shared_ptr<HandlerThreads> threads_ = std::make_shared<HandlerThreads>();
  Error error_;
};

// ---- events --------------------------------------------------------------------------------

// Publishes `event` on `topic` through the client's broker, as protobuf binary.
inline Error publish(const Client& client, std::string_view topic,
                     const google::protobuf::MessageLite& event) {
  Result<Message> message = to_message(event, "the event on topic '" + std::string(topic) + "'");
  if (!message.ok()) return message.error;
  return client.publish(topic, message.value);
}

// Reads an event: protobuf binary, or JSON when its Content-Type says so (full runtime only).
template <class M>
Error parse_event(std::string_view topic, const Message& message, M& out) {
  const std::string what = "the event on topic '" + std::string(topic) + "'";
  const std::string* type = find_header(message.header, kContentTypeHeader);
  if constexpr (std::is_base_of_v<google::protobuf::Message, M>) {
    if (type != nullptr && media_type(*type) == kJsonContentType) {
      const auto status = google::protobuf::util::JsonStringToMessage(message.body, &out);
      if (!status.ok()) {
        return Error::bad_request(what + " is not a valid " + out.GetTypeName() +
                                  " in JSON: " + status.ToString());
      }
      return Error{};
    }
  }
  return parse(message.body, out, what);
}

// Delivers every M published on `topic` to `handler` once the server has started: on a module
// thread, one at a time. The error the handler returns goes back to the publisher.
template <class M>
Error subscribe(const Server& server, std::string_view topic,
                std::function<Error(const M&)> handler, const SubscribeOptions& options) {
  if (!handler) return Error::bad_request("subscribe to '" + std::string(topic) + "': no handler");
  return server.subscribe(
      topic,
      [handler = std::move(handler)](std::string_view delivered_on, const Message& message) {
        M event;
        Error error = parse_event(delivered_on, message, event);
        return error.ok() ? run_handler([&] { return handler(event); }) : error;
      },
      options);
}

}  // namespace rpc
}  // namespace micro
