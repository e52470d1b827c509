// Test helpers: a real etcd started on loopback with free ports and its own data dir (never the
// system's etcd on 2379), and raw requests to its JSON gateway (Beast, blocking).
#pragma once

#include <fcntl.h>
#include <cstdio>
#include <cstdlib>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "micro/testing/ports.hpp"

namespace micro::testing {

// POSTs `body` to `path` on 127.0.0.1:port; returns the status (0: no answer) and body.
inline std::pair<unsigned, std::string> gateway_post(unsigned short port, const std::string& path,
                                                     const std::string& body,
                                                     int timeout_s = 5) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  try {
    boost::asio::io_context io;
    beast::tcp_stream stream(io);
    stream.expires_after(std::chrono::seconds(timeout_s));
    stream.connect({boost::asio::ip::make_address("127.0.0.1"), port});
    http::request<http::string_body> request(http::verb::post, path, 11);
    request.set(http::field::host, "127.0.0.1");
    request.body() = body;
    request.prepare_payload();
    http::write(stream, request);
    beast::flat_buffer buffer;
    http::response<http::string_body> response;
    http::read(stream, buffer, response);
    return {response.result_int(), response.body()};
  } catch (const std::exception&) {
    return {0, {}};
  }
}

class EtcdProcess {
 public:
  // Picks free ports and a temp data dir; start() runs etcd.
  EtcdProcess() : client_port_(listen_port()), peer_port_(listen_port()) {
    char tmpl[] = "/tmp/micro-etcd-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) dir_ = tmpl;
  }
  ~EtcdProcess() {
    stop();
    if (!dir_.empty()) std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  EtcdProcess(const EtcdProcess&) = delete;
  EtcdProcess& operator=(const EtcdProcess&) = delete;

  // Starts etcd (same ports and data dir every time; `fresh_data` wipes the data first) and
  // waits until it answers; false if it does not within 30 s (a loaded machine under ASan has
  // been seen to need more than 15 s for a restart), with the tail of etcd's log on stderr.
  bool start(bool fresh_data = false) {
    if (fresh_data) std::system(("rm -rf '" + dir_ + "/data'").c_str());
    const std::string client = "http://127.0.0.1:" + std::to_string(client_port_);
    const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
    std::vector<std::string> args = {
        "/usr/bin/etcd", "--name", "default", "--data-dir", dir_ + "/data", "--listen-client-urls",
        client, "--advertise-client-urls", client, "--listen-peer-urls", peer,
        "--initial-advertise-peer-urls", peer, "--initial-cluster", "default=" + peer,
        "--initial-cluster-state", "new",
        // Fast election, so it serves within ~0.1 s; leases then count from 1 s.
        "--heartbeat-interval", "10", "--election-timeout", "100"};
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a test that crashes takes its etcd with it
      // The etcd package reads ETCD_* from the environment; none may leak in from the machine.
      for (char** e = environ; *e != nullptr;) {
        if (std::string(*e).rfind("ETCD_", 0) == 0)
          ::unsetenv(std::string(*e).substr(0, std::string(*e).find('=')).c_str());
        else
          ++e;
      }
      const int log = ::open((dir_ + "/etcd.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (log >= 0) {
        ::dup2(log, 1);
        ::dup2(log, 2);
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < until) {
      if (gateway_post(client_port_, "/v3/kv/range", "{\"key\":\"AA==\"}", 1).first == 200)
        return true;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return start_failed("exited");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // bounded wait for startup
    }
    return start_failed("did not answer within 30 s");
  }

  // Says why start() failed, with the end of etcd's log, so a failure in CI explains itself.
  bool start_failed(const std::string& why) const {
    std::fprintf(stderr, "etcd on 127.0.0.1:%u (peer %u) %s; the end of %s/etcd.log:\n",
                 unsigned(client_port_), unsigned(peer_port_), why.c_str(), dir_.c_str());
    std::system(("tail -n 30 '" + dir_ + "/etcd.log' >&2").c_str());
    return false;
  }

  // Kills etcd (SIGKILL: as a crash would) and waits for it.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  unsigned short client_port() const { return client_port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(client_port_); }
  const std::string& dir() const { return dir_; }

 private:
  unsigned short client_port_;
  unsigned short peer_port_;
  std::string dir_;
  pid_t pid_ = -1;
};

}  // namespace micro::testing

namespace micro::testing {

// One etcd per test process, shared by its tests (each uses names of its own): chosen when the
// test binary loads (ports, temp dir), started by a gtest environment only when tests run (not
// when ctest lists them), killed when the process exits.
inline EtcdProcess& shared_etcd() {
  static EtcdProcess etcd;
  return etcd;
}

class SharedEtcdEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    ASSERT_TRUE(shared_etcd().start())
        << "etcd did not start; see " << shared_etcd().dir() << "/etcd.log";
  }
  void TearDown() override { shared_etcd().stop(); }
};

}  // namespace micro::testing
