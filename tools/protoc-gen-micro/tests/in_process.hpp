// An in-process server and client for driving generated code without a network: the client's
// calls go straight to the endpoints registered on the server, and its streams are in-memory
// pipes. Both are real plugin classes, reached through the C vtables as a host would.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "micro/client.hpp"
#include "micro/server.hpp"

namespace micro::testing {

// Two directions of messages between a client end and a server end.
class Pipe {
 public:
  enum Side { kClient = 0, kServer = 1 };

  void send(Side from, Message message, const Done& done) {
    MessageCallback waiting;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      Direction& out = direction(from);
      if (cancelled_) return done(Error(MICRO_CODE_CLIENT_CLOSED, "the stream was cancelled"));
      if (out.closed) return done(Error::bad_request("send after close_send"));
      if (out.waiting) {
        waiting = std::move(out.waiting);
        out.waiting = nullptr;
      } else {
        out.queue.push_back(std::move(message));
      }
    }
    if (waiting) waiting(Error{}, std::move(message));
    done(Error{});
  }

  void recv(Side at, MessageCallback on_message) {
    std::optional<Message> message;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      Direction& in = direction(other(at));
      if (cancelled_) {
        return on_message(Error(MICRO_CODE_CLIENT_CLOSED, "the stream was cancelled"),
                          std::nullopt);
      }
      if (in.queue.empty() && !in.closed) {
        in.waiting = std::move(on_message);
        return;
      }
      if (!in.queue.empty()) {
        message = std::move(in.queue.front());
        in.queue.pop_front();
      }
    }
    on_message(Error{}, std::move(message));
  }

  void close_send(Side from, const Done& done) {
    MessageCallback waiting;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      Direction& out = direction(from);
      out.closed = true;
      if (out.waiting && out.queue.empty()) {
        waiting = std::move(out.waiting);
        out.waiting = nullptr;
      }
    }
    if (waiting) waiting(Error{}, std::nullopt);
    done(Error{});
  }

  void cancel() {
    std::vector<MessageCallback> waiting;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      cancelled_ = true;
      for (Direction* d : {&directions_[0], &directions_[1]}) {
        if (d->waiting) waiting.push_back(std::move(d->waiting));
        d->waiting = nullptr;
      }
    }
    for (auto& fn : waiting) fn(Error(MICRO_CODE_CLIENT_CLOSED, "the stream was cancelled"), {});
  }

  // An end going away: an end that had finished sending leaves the other side to read what it
  // sent; one that had not aborts the stream.
  void end(Side side) {
    bool abort = false;
    MessageCallback own_recv;  // must complete before the end is gone
    {
      std::lock_guard<std::mutex> lock(mutex_);
      abort = !direction(side).closed;
      Direction& in = direction(other(side));
      own_recv = std::move(in.waiting);
      in.waiting = nullptr;
    }
    if (own_recv) own_recv(Error(MICRO_CODE_CLIENT_CLOSED, "the stream was destroyed"), {});
    if (abort) cancel();
  }

 private:
  struct Direction {
    std::deque<Message> queue;
    bool closed = false;      // its sender has half-closed
    MessageCallback waiting;  // the receiver's pending recv
  };
  static Side other(Side side) { return side == kClient ? kServer : kClient; }
  Direction& direction(Side from) { return directions_[from]; }

  std::mutex mutex_;
  bool cancelled_ = false;
  Direction directions_[2];
};

class PipeEnd final : public StreamImpl {
 public:
  PipeEnd(std::shared_ptr<Pipe> pipe, Pipe::Side side) : pipe_(std::move(pipe)), side_(side) {}
  ~PipeEnd() override { pipe_->end(side_); }

  void send(Message message, Done done) override { pipe_->send(side_, std::move(message), done); }
  void recv(MessageCallback on_message) override { pipe_->recv(side_, std::move(on_message)); }
  void close_send(Done done) override { pipe_->close_send(side_, done); }
  void cancel() override { pipe_->cancel(); }

 private:
  std::shared_ptr<Pipe> pipe_;
  Pipe::Side side_;
};

// Answers a call by completing the client's callback.
class DirectReply final : public ReplyImpl {
 public:
  explicit DirectReply(ResponseCallback done) : done_(std::move(done)) {}
  void send(const Error& error, Message response) override { done_(error, std::move(response)); }
  bool cancelled() const override { return false; }

 private:
  ResponseCallback done_;
};

class InProcessServer final : public ServerPlugin {
 public:
  Error handle(EndpointHandler handler) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::string name = handler.name;
    if (!endpoints_.emplace(name, std::move(handler)).second)
      return Error::conflict("endpoint " + name + " is already registered");
    return Error{};
  }
  Error subscribe(const std::string& topic, const SubscribeOptions&,
                  BrokerHandler handler) override {
    std::lock_guard<std::mutex> lock(mutex_);
    subscribers_.emplace(topic, std::move(handler));
    return Error{};
  }
  void start(Done done) override { done(Error{}); }
  void stop(Done done) override { done(Error{}); }
  std::string_view address() const override { return "in-process"; }

  std::optional<EndpointHandler> endpoint(const std::string& name) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = endpoints_.find(name);
    if (it == endpoints_.end()) return std::nullopt;
    return it->second;
  }
  std::vector<std::string> endpoint_names() {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> out;
    for (const auto& [name, handler] : endpoints_) out.push_back(name);
    return out;
  }
  std::vector<BrokerHandler> subscribers(const std::string& topic) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<BrokerHandler> out;
    auto [first, last] = subscribers_.equal_range(topic);
    for (auto it = first; it != last; ++it) out.push_back(it->second);
    return out;
  }

  micro_server_t handle() {
    return {static_cast<const micro_server_vtable_t*>(c_vtable()),
            static_cast<ServerPlugin*>(this)};
  }

 private:
  std::mutex mutex_;
  std::map<std::string, EndpointHandler> endpoints_;
  std::multimap<std::string, BrokerHandler> subscribers_;
};

// Calls endpoints of an InProcessServer as if across a network whose codec is protobuf both ways:
// bodies pass unchanged. Records the last request it was given.
class InProcessClient final : public ClientPlugin {
 public:
  explicit InProcessClient(InProcessServer& server) : server_(server) {}

  void call(Request request, const CallOptions&, ResponseCallback done) override {
    record(request);
    std::optional<EndpointHandler> endpoint = server_.endpoint(request.endpoint);
    if (!endpoint) return done(Error::not_found("no endpoint " + request.endpoint), Message{});
    if (!endpoint->on_call)
      return done(Error::bad_request(request.endpoint + " is a stream"), Message{});
    Reply reply(to_handle(std::make_unique<DirectReply>(std::move(done))));
    endpoint->on_call(std::move(request), std::move(reply));
  }

  void stream(Request request, const CallOptions&, StreamImplCallback done) override {
    record(request);
    std::optional<EndpointHandler> endpoint = server_.endpoint(request.endpoint);
    if (!endpoint) return done(Error::not_found("no endpoint " + request.endpoint), nullptr);
    if (!endpoint->on_stream)
      return done(Error::bad_request(request.endpoint + " is not a stream"), nullptr);
    auto pipe = std::make_shared<Pipe>();
    Stream server_end(to_handle(std::make_unique<PipeEnd>(pipe, Pipe::kServer)));
    endpoint->on_stream(std::move(request), std::move(server_end));
    done(Error{}, std::make_unique<PipeEnd>(pipe, Pipe::kClient));
  }

  void publish(const std::string& topic, Message message, Done done) override {
    for (const BrokerHandler& subscriber : server_.subscribers(topic)) {
      Error error = subscriber(topic, message);
      if (!error.ok()) return done(error);
    }
    done(Error{});
  }

  micro_client_t handle() {
    return {static_cast<const micro_client_vtable_t*>(c_vtable()),
            static_cast<ClientPlugin*>(this)};
  }

  Request last_request() {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_request_;
  }

 private:
  void record(const Request& request) {
    std::lock_guard<std::mutex> lock(mutex_);
    last_request_ = request;
  }

  InProcessServer& server_;
  std::mutex mutex_;
  Request last_request_;
};

}  // namespace micro::testing
