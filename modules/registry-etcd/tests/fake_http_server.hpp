// A tiny HTTP server on a free loopback port, for what a real etcd will not do on demand:
// answer 500, answer garbage, answer too late, or play a scripted watch stream. Each connection
// has a thread of its own; requests are read with Beast, answers are raw bytes (so they can be
// anything).
#pragma once

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <thread>

namespace micro::testing {

class FakeHttpServer {
 public:
  struct Answer {
    std::string bytes;                   // written as they are
    std::chrono::milliseconds delay{0};  // before writing
    bool hold_open = false;              // then keep the connection until the server stops
  };
  // Gets each request's target and body.
  using Handler = std::function<Answer(const std::string& target, const std::string& body)>;

  explicit FakeHttpServer(Handler handler)
      : handler_(std::move(handler)),
        acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this] { accept_loop(); });
  }
  ~FakeHttpServer() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      for (auto* s : sockets_) {
        boost::system::error_code ignored;
        s->shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
      }
    }
    stopped_.notify_all();
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    // Unblocks accept(): a connection to ourselves.
    boost::asio::io_context io;
    boost::asio::ip::tcp::socket poke(io);
    poke.connect(acceptor_endpoint_, ignored);
    thread_.join();
    for (auto& t : connections_) t.join();
  }

  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(acceptor_endpoint_.port());
  }
  int requests() const { return requests_.load(); }

  // A complete HTTP/1.1 answer with a body.
  static std::string http(int status, const std::string& body,
                          const std::string& type = "application/json") {
    return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: " + type +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
           body;
  }
  // The head of a chunked answer, and one chunk.
  static std::string chunked_head() {
    return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: "
           "chunked\r\n\r\n";
  }
  static std::string chunk(const std::string& data) {
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    return size + data + "\r\n";
  }

 private:
  void accept_loop() {
    while (true) {
      auto socket = std::make_unique<boost::asio::ip::tcp::socket>(io_);
      boost::system::error_code ec;
      acceptor_.accept(*socket, ec);
      std::lock_guard<std::mutex> lock(mutex_);
      if (ec || stopping_) return;
      connections_.emplace_back([this, s = std::move(socket)]() mutable { serve(std::move(s)); });
    }
  }

  void serve(std::unique_ptr<boost::asio::ip::tcp::socket> socket) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      sockets_.push_back(socket.get());
    }
    namespace http = boost::beast::http;
    boost::beast::flat_buffer buffer;
    http::request<http::string_body> request;
    boost::system::error_code ec;
    http::read(*socket, buffer, request, ec);
    if (!ec) {
      ++requests_;
      Answer answer = handler_(std::string(request.target()), request.body());
      std::unique_lock<std::mutex> lock(mutex_);
      if (!stopped_.wait_for(lock, answer.delay, [this] { return stopping_; })) {
        lock.unlock();
        boost::asio::write(*socket, boost::asio::buffer(answer.bytes), ec);
        lock.lock();
        if (answer.hold_open) stopped_.wait(lock, [this] { return stopping_; });
      }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    sockets_.remove(socket.get());
    boost::system::error_code ignored;
    socket->close(ignored);
  }

  Handler handler_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::ip::tcp::endpoint acceptor_endpoint_ = acceptor_.local_endpoint();
  std::atomic<int> requests_{0};
  std::mutex mutex_;
  std::condition_variable stopped_;
  bool stopping_ = false;
  std::list<boost::asio::ip::tcp::socket*> sockets_;
  std::list<std::thread> connections_;
  std::thread thread_;
};

}  // namespace micro::testing
