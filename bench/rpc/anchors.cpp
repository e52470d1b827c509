// The anchors of bench/rpc, each as plain as its library allows: a gRPC callback echo service
// with a callback client, a Beast HTTP/1.1 keep-alive echo, and a bare Asio length-prefixed
// stream echo. Servers and clients run in this process on their own threads, over 127.0.0.1.
#include <grpcpp/grpcpp.h>

#include <unistd.h>

#include <array>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "contenders.hpp"
#include "echo.grpc.pb.h"

namespace benchrpc {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// ---- gRPC ----------------------------------------------------------------------------------

// Echo.Chat on the server: each message read is written back, then the next is read (the
// callback API allows one read and one write outstanding).
class GrpcChat final : public grpc::ServerBidiReactor<Payload, Payload> {
 public:
  GrpcChat() { StartRead(&in_); }
  void OnReadDone(bool ok) override {
    if (!ok) return Finish(grpc::Status::OK);  // the client's WritesDone
    out_.set_data(in_.data());
    StartWrite(&out_);
  }
  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
    StartRead(&in_);
  }
  void OnDone() override { delete this; }

 private:
  Payload in_, out_;
};

class GrpcService final : public Echo::CallbackService {
  grpc::ServerUnaryReactor* Call(grpc::CallbackServerContext* context, const Payload* request,
                                 Payload* response) override {
    response->set_data(request->data());
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  grpc::ServerBidiReactor<Payload, Payload>* Chat(grpc::CallbackServerContext*) override {
    return new GrpcChat();
  }
};

class GrpcEcho final : public UnaryContender {
 public:
  bool start(std::string& error) {
    int port = 0;
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    if (!server_ || port == 0) {
      error = "cannot start the gRPC server on 127.0.0.1";
      return false;
    }
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials());
    stub_ = Echo::NewStub(channel_);
    request_.set_data(payload64());
    return true;
  }
  ~GrpcEcho() override {
    if (server_) server_->Shutdown();
  }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  Summary run(int inflight, Clock::duration warmup, Clock::duration measure) override {
    struct Slot {
      std::unique_ptr<grpc::ClientContext> context;
      Payload response;
    };
    std::vector<Slot> slots(static_cast<size_t>(inflight));
    Loop loop(inflight, warmup, measure);
    std::function<void(int)> issue = [&](int i) {
      Slot& s = slots[static_cast<size_t>(i)];
      s.context = std::make_unique<grpc::ClientContext>();
      s.response.Clear();
      stub_->async()->Call(s.context.get(), &request_, &s.response,
                           [&, i](grpc::Status status) {
                             Slot& s = slots[static_cast<size_t>(i)];
                             if (!status.ok()) return loop.failed(i, status.error_message());
                             if (s.response.data().size() != 64) return loop.failed(i, "wrong echo");
                             if (loop.finished(i)) issue(i);
                           });
    };
    return loop.drive(issue, "grpc");
  }

 private:
  GrpcService service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Echo::Stub> stub_;
  Payload request_;
};

// One Echo.Chat stream through gRPC's synchronous client (a writer thread and a reader thread on
// one ClientReaderWriter, as gRPC allows) against the callback service above: a framework's
// stream, for comparison with micro's (the Asio anchor below is bare sockets).
class GrpcStream final : public StreamContender {
 public:
  explicit GrpcStream(std::shared_ptr<grpc::Channel> channel) : stub_(Echo::NewStub(channel)) {}
  StreamSummary run(Clock::duration warmup, Clock::duration measure) override {
    grpc::ClientContext context;
    auto stream = stub_->Chat(&context);
    Payload out, in;
    out.set_data(payload64());
    StreamSummary summary = drive_stream(
        warmup, measure,
        [&]() -> std::string { return stream->Write(out) ? std::string() : "write failed"; },
        [&] { stream->WritesDone(); },
        [&](std::string& error) -> int {
          if (!stream->Read(&in)) return 0;
          if (in.data().size() != 64) {
            error = "wrong echo";
            return 0;
          }
          return 1;
        });
    const grpc::Status status = stream->Finish();
    if (!status.ok() && summary.error.empty()) summary.error = status.error_message();
    return summary;
  }

 private:
  std::unique_ptr<Echo::Stub> stub_;
};

// ---- Asio plumbing -------------------------------------------------------------------------

// An io_context run by one thread until destroyed.
class IoThread {
 public:
  IoThread() : work_(asio::make_work_guard(io_)), thread_([this] { io_.run(); }) {}
  ~IoThread() {
    work_.reset();
    io_.stop();
    thread_.join();
  }
  asio::io_context& io() { return io_; }

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
};

// Accepts on 127.0.0.1:0 on the server thread; each socket goes to `serve`.
class Acceptor {
 public:
  Acceptor(asio::io_context& io, std::function<void(tcp::socket)> serve)
      : acceptor_(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
        serve_(std::move(serve)) {
    accept();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  // Stops accepting, on the server's thread; returns once it has.
  void close() {
    std::promise<void> closed;
    asio::post(acceptor_.get_executor(), [&] {
      beast::error_code ignored;
      acceptor_.close(ignored);
      closed.set_value();
    });
    closed.get_future().wait();
  }

 private:
  void accept() {
    acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec) return;
      socket.set_option(tcp::no_delay(true));
      serve_(std::move(socket));
      accept();
    });
  }
  tcp::acceptor acceptor_;
  std::function<void(tcp::socket)> serve_;
};

// ---- Beast HTTP/1.1 ------------------------------------------------------------------------

class BeastServerSession : public std::enable_shared_from_this<BeastServerSession> {
 public:
  explicit BeastServerSession(tcp::socket socket) : stream_(std::move(socket)) {}
  void read() {
    request_ = {};
    http::async_read(stream_, buffer_, request_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       if (ec) return;
                       self->respond();
                     });
  }

 private:
  void respond() {
    response_ = {};
    response_.result(http::status::ok);
    response_.version(11);
    response_.set(http::field::content_type, "application/octet-stream");
    response_.keep_alive(request_.keep_alive());
    response_.body() = std::move(request_.body());
    response_.prepare_payload();
    http::async_write(stream_, response_,
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                        if (ec) return;
                        self->read();
                      });
  }
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
};

class BeastEcho final : public UnaryContender {
 public:
  BeastEcho()
      : acceptor_(server_.io(), [](tcp::socket s) {
          std::make_shared<BeastServerSession>(std::move(s))->read();
        }) {}
  ~BeastEcho() override { acceptor_.close(); }

  Summary run(int inflight, Clock::duration warmup, Clock::duration measure) override {
    struct Slot {
      explicit Slot(asio::io_context& io) : stream(io) {}
      beast::tcp_stream stream;
      beast::flat_buffer buffer;
      http::request<http::string_body> request;
      http::response<http::string_body> response;
    };
    std::vector<std::unique_ptr<Slot>> slots;
    for (int i = 0; i < inflight; ++i) {
      auto s = std::make_unique<Slot>(client_.io());
      s->stream.connect(tcp::endpoint(asio::ip::address_v4::loopback(), acceptor_.port()));
      s->stream.socket().set_option(tcp::no_delay(true));
      s->request.method(http::verb::post);
      s->request.target("/echo");
      s->request.version(11);
      s->request.set(http::field::host, "127.0.0.1");
      s->request.set(http::field::content_type, "application/octet-stream");
      s->request.keep_alive(true);
      s->request.body() = payload64();
      s->request.prepare_payload();
      slots.push_back(std::move(s));
    }
    Loop loop(inflight, warmup, measure);
    std::function<void(int)> issue = [&](int i) {
      Slot& s = *slots[static_cast<size_t>(i)];
      http::async_write(s.stream, s.request, [&, i](beast::error_code ec, std::size_t) {
        if (ec) return loop.failed(i, ec.message());
        Slot& s = *slots[static_cast<size_t>(i)];
        s.response = {};
        http::async_read(s.stream, s.buffer, s.response, [&, i](beast::error_code ec, std::size_t) {
          if (ec) return loop.failed(i, ec.message());
          if (slots[static_cast<size_t>(i)]->response.body().size() != 64)
            return loop.failed(i, "wrong echo");
          if (loop.finished(i)) issue(i);
        });
      });
    };
    loop.begin();
    asio::post(client_.io(), [&] {
      for (int i = 0; i < inflight; ++i) {
        loop.started(i);
        issue(i);
      }
    });
    if (!loop.wait()) std::_Exit(1);
    // Close on the client's thread, where the sockets live.
    std::promise<void> closed;
    asio::post(client_.io(), [&] {
      for (auto& s : slots) {
        beast::error_code ignored;
        s->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
        s->stream.close();
      }
      closed.set_value();
    });
    closed.get_future().wait();
    return loop.summary();
  }

 private:
  IoThread server_;
  IoThread client_;
  Acceptor acceptor_;
};

// ---- Asio length-prefixed stream -----------------------------------------------------------

// Reads what has arrived, echoes every whole message in it with one write, reads on.
class AsioEchoSession : public std::enable_shared_from_this<AsioEchoSession> {
 public:
  explicit AsioEchoSession(tcp::socket socket) : socket_(std::move(socket)) {}
  void read() {
    socket_.async_read_some(asio::buffer(chunk_), [self = shared_from_this()](
                                                       beast::error_code ec, std::size_t n) {
      if (ec) return self->end();
      self->in_.insert(self->in_.end(), self->chunk_.begin(), self->chunk_.begin() + n);
      self->echo();
    });
  }

 private:
  void echo() {
    out_.clear();
    size_t at = 0;
    while (in_.size() - at >= 4) {
      const uint32_t len = (uint32_t(uint8_t(in_[at])) << 24) | (uint32_t(uint8_t(in_[at + 1])) << 16) |
                           (uint32_t(uint8_t(in_[at + 2])) << 8) | uint32_t(uint8_t(in_[at + 3]));
      if (in_.size() - at - 4 < len) break;
      out_.insert(out_.end(), in_.begin() + at, in_.begin() + at + 4 + len);
      at += 4 + len;
    }
    in_.erase(in_.begin(), in_.begin() + at);
    if (out_.empty()) return read();
    asio::async_write(socket_, asio::buffer(out_),
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                        if (ec) return;
                        self->read();
                      });
  }
  void end() {
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);  // the end of our echoes
  }
  tcp::socket socket_;
  std::array<char, 64 * 1024> chunk_;
  std::vector<char> in_, out_;
};

// The stream anchor's client, written as a high-throughput Asio client is, in the shape of
// micro's stream send: `send` appends the frame to an outbox and returns; one async_write on the
// client's I/O thread takes the whole outbox while no write is in flight, and the next takes what
// queued meanwhile. The sender waits only while kOutboxLimit bytes or more are queued or being
// written. The reader blocks in reads on its own thread and takes every whole frame that arrived.
// It reads through a second descriptor of the same socket (dup), so the blocking reads and the
// I/O thread's asynchronous writes never share one Asio socket object.
class AsioStreamClient {
 public:
  static constexpr size_t kOutboxLimit = 256 * 1024;  // as transport-http's stream outbox

  explicit AsioStreamClient(uint16_t port)
      : work_(asio::make_work_guard(io_)), writer_(io_), reader_(read_io_) {
    writer_.connect(tcp::endpoint(asio::ip::address_v4::loopback(), port));
    writer_.set_option(tcp::no_delay(true));
    reader_.assign(tcp::v4(), ::dup(writer_.native_handle()));
    thread_ = std::thread([this] { io_.run(); });
  }
  ~AsioStreamClient() {
    work_.reset();
    io_.stop();
    thread_.join();
  }

  // On the writer thread: queues one frame.
  std::string send(const std::string& frame) {
    std::unique_lock<std::mutex> lock(mutex_);
    room_.wait(lock, [&] { return failed_ || outbox_.size() + in_flight_ < kOutboxLimit; });
    if (failed_) return error_.message();
    outbox_ += frame;
    if (!writing_) {
      writing_ = true;
      asio::post(io_, [this] { write(); });
    }
    return {};
  }
  // On the writer thread: ends our side once every queued frame is written.
  void close_send() {
    std::lock_guard<std::mutex> lock(mutex_);
    closing_ = true;
    if (!writing_) asio::post(io_, [this] { shutdown(); });
  }
  // On the reader thread: blocks until frames arrive; returns how many whole ones, 0 at the end.
  int recv(std::string& error, size_t frame_size) {
    while (true) {
      int whole = 0;
      size_t at = 0;
      while (in_.size() - at >= frame_size) {
        if (in_[at + 3] != static_cast<char>(frame_size - 4)) {
          error = "bad frame";
          return 0;
        }
        at += frame_size;
        ++whole;
      }
      in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(at));
      if (whole > 0) return whole;
      beast::error_code ec;
      const size_t n = reader_.read_some(asio::buffer(chunk_), ec);
      if (ec == asio::error::eof) return 0;
      if (ec) {
        error = ec.message();
        return 0;
      }
      in_.insert(in_.end(), chunk_.begin(), chunk_.begin() + static_cast<std::ptrdiff_t>(n));
    }
  }

 private:
  // On the I/O thread: writes everything queued, then what queued meanwhile, until none is left.
  void write() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      writing_buf_.swap(outbox_);
      outbox_.clear();
      in_flight_ = writing_buf_.size();
    }
    asio::async_write(writer_, asio::buffer(writing_buf_), [this](beast::error_code ec, size_t) {
      bool more = false, end = false;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        in_flight_ = 0;
        if (ec) {
          failed_ = true;
          error_ = ec;
        }
        more = !ec && !outbox_.empty();
        if (!more) {
          writing_ = false;
          end = closing_;
        }
      }
      room_.notify_one();
      if (more) return write();
      if (end) shutdown();
    });
  }
  void shutdown() {
    beast::error_code ignored;
    writer_.shutdown(tcp::socket::shutdown_send, ignored);  // the end of our messages
  }

  asio::io_context io_;
  asio::io_context read_io_;  // never run: the reader's socket only blocks
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::socket writer_;
  tcp::socket reader_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable room_;
  std::string outbox_;          // frames not yet handed to a write
  std::string writing_buf_;     // the frames being written (I/O thread only)
  size_t in_flight_ = 0;        // their size
  bool writing_ = false;        // a write is posted or under way
  bool closing_ = false;
  bool failed_ = false;
  beast::error_code error_;
  std::vector<char> in_;
  std::array<char, 64 * 1024> chunk_;
};

class AsioStreamEcho final : public StreamContender {
 public:
  AsioStreamEcho()
      : acceptor_(server_.io(),
                  [](tcp::socket s) { std::make_shared<AsioEchoSession>(std::move(s))->read(); }) {}
  ~AsioStreamEcho() override { acceptor_.close(); }

  StreamSummary run(Clock::duration warmup, Clock::duration measure) override {
    AsioStreamClient client(acceptor_.port());
    const std::string& p = payload64();
    std::string frame(4, '\0');
    frame[3] = static_cast<char>(p.size());
    frame += p;
    return drive_stream(
        warmup, measure, [&] { return client.send(frame); }, [&] { client.close_send(); },
        [&](std::string& error) { return client.recv(error, frame.size()); });
  }

 private:
  IoThread server_;
  Acceptor acceptor_;
};

}  // namespace

std::unique_ptr<UnaryContender> make_grpc_echo(std::string& error) {
  auto out = std::make_unique<GrpcEcho>();
  if (!out->start(error)) return nullptr;
  return out;
}

std::unique_ptr<StreamContender> make_grpc_stream(const UnaryContender& grpc_echo) {
  return std::make_unique<GrpcStream>(static_cast<const GrpcEcho&>(grpc_echo).channel());
}

std::unique_ptr<UnaryContender> make_beast_echo(std::string&) {
  return std::make_unique<BeastEcho>();
}

std::unique_ptr<StreamContender> make_asio_stream_echo(std::string&) {
  return std::make_unique<AsioStreamEcho>();
}

}  // namespace benchrpc
