// broker-http across processes: subscribers are `micro subscribe` processes (the real command),
// each printing the messages it gets to a file; the publisher is this process's client
// (client-rpc -> broker-http). They meet in a registry-file folder.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <map>
#include <set>
#include <thread>

#include "micro/module.hpp"
#include "micro/testing/stack.hpp"

namespace {

using namespace std::chrono_literals;

// 10,000 messages per test; under the sanitizers (several times slower) a fifth of that.
#ifdef MICRO_TEST_SANITIZED
constexpr int kScale = 5;
#else
constexpr int kScale = 1;
#endif

class BrokerCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/micro-broker-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const std::string tables = "[registry]\nmodule = \"registry-file\"\npath = \"" + dir_ +
                               "/registry\"\n[broker]\nmodule = \"broker-http\"\n"
                               "address = \"127.0.0.1:0\"\n";
    config_ = dir_ + "/micro.toml";
    std::ofstream(config_) << "[service]\nname = \"cli\"\n[modules]\npath = [\"" +
                                  micro::testing::module_dir() + "\"]\n" + tables +
                                  "[log]\nlevel = \"warn\"\n";
    stack_ = micro::testing::require_stack(tables, {MICRO_KIND_CLIENT});
    ASSERT_NE(stack_, nullptr);
    client_ = micro::Client(stack_->client());
  }

  void TearDown() override {
    for (pid_t pid : children_) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    stack_.reset();
    std::system(("rm -rf " + dir_).c_str());
  }

  static std::string micro_binary() {
    return std::string(std::getenv("MICRO_BINARY_DIR")) + "/bin/micro";
  }

  // Starts `micro subscribe TOPIC [--queue Q] [extra]` with its stdout in a file; returns the
  // file.
  std::string start_subscriber(const std::string& topic, const std::string& queue = {},
                               const std::string& extra = {}) {
    const std::string out = dir_ + "/sub" + std::to_string(children_.size()) + ".txt";
    const std::string micro = micro_binary();
    const pid_t pid = fork();
    if (pid == 0) {
      if (!freopen(out.c_str(), "w", stdout)) _exit(126);
      std::vector<const char*> argv = {micro.c_str(), "--config", config_.c_str(), "subscribe",
                                       topic.c_str()};
      if (!queue.empty()) argv.insert(argv.end(), {"--queue", queue.c_str()});
      if (!extra.empty()) argv.push_back(extra.c_str());
      argv.push_back(nullptr);
      execv(micro.c_str(), const_cast<char* const*>(argv.data()));
      _exit(127);
    }
    children_.push_back(pid);
    pids_[out] = pid;
    return out;
  }

  void stop(const std::string& file, int signal) {
    const pid_t pid = pids_.at(file);
    kill(pid, signal);
    int status = 0;
    waitpid(pid, &status, 0);
    children_.erase(std::find(children_.begin(), children_.end(), pid));
    if (signal == SIGTERM) {
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "micro subscribe ends cleanly";
    }
  }

  // Waits until the registry lists `count` subscribers of `topic`.
  bool wait_for_subscribers(const std::string& topic, size_t count) {
    micro::Registry registry(stack_->registry());
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < until) {
      size_t n = 0;
      auto got = registry.get_service("micro.http.broker");
      for (const auto& s : got.value)
        for (const auto& node : s.nodes) n += node.metadata.at("topic") == topic;
      if (n >= count) return true;
      std::this_thread::sleep_for(20ms);  // polling other processes' startup, bounded
    }
    return false;
  }

  static std::vector<std::string> lines(const std::string& file) {
    std::ifstream in(file);
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }

  // Waits (bounded) until `file` has `count` lines: a subscriber's last prints may trail the
  // publisher by a moment, since the handler answers after printing but the file is read here.
  static std::vector<std::string> wait_lines(const std::string& file, size_t count) {
    const auto until = std::chrono::steady_clock::now() + 10s;
    auto got = lines(file);
    while (got.size() < count && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(20ms);
      got = lines(file);
    }
    return got;
  }

  static std::vector<int> numbers_int(int from, int to) {
    std::vector<int> out;
    for (int i = from; i < to; ++i) out.push_back(i);
    return out;
  }

  static std::vector<std::string> numbers(int from, int to) {
    std::vector<std::string> out;
    for (int i = from; i < to; ++i) out.push_back(std::to_string(i));
    return out;
  }

  micro::Error publish(const std::string& topic, int i) {
    return client_.publish(topic, micro::Message{{{"content-type", "text/plain"}},
                                                 std::to_string(i)});
  }

  // Asynchronous publishes, none waiting for another: the burst goes out in batches. The
  // results arrive by index.
  class Burst {
   public:
    explicit Burst(micro::Broker broker, size_t count) : broker_(broker), errors_(count) {}
    void publish(const std::string& topic, size_t i) {
      broker_.publish(topic, micro::Message{{{"content-type", "text/plain"}}, std::to_string(i)},
                      [this, i](const micro::Error& e) {
                        std::lock_guard<std::mutex> lock(mutex_);
                        errors_[i] = e;
                        ++answered_;
                        changed_.notify_all();
                      });
    }
    size_t answered() {
      std::lock_guard<std::mutex> lock(mutex_);
      return answered_;
    }
    bool wait_answered(size_t n) {
      std::unique_lock<std::mutex> lock(mutex_);
      return changed_.wait_for(lock, 30s, [&] { return answered_ >= n; });
    }
    std::vector<micro::Error> errors() {
      std::lock_guard<std::mutex> lock(mutex_);
      return errors_;
    }

   private:
    micro::Broker broker_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<micro::Error> errors_;
    size_t answered_ = 0;
  };

  // The numbers in `file`, in the order printed.
  static std::vector<int> ints(const std::vector<std::string>& lines) {
    std::vector<int> out;
    for (const auto& l : lines) out.push_back(std::stoi(l));
    return out;
  }

  std::string dir_, config_;
  std::vector<pid_t> children_;
  std::map<std::string, pid_t> pids_;
  std::unique_ptr<micro::host::Stack> stack_;
  micro::Client client_;
};

TEST_F(BrokerCluster, EverySubscriberGetsEveryMessageOnceInOrder) {
  std::vector<std::string> files;
  for (int i = 0; i < 3; ++i) files.push_back(start_subscriber("fanout"));
  ASSERT_TRUE(wait_for_subscribers("fanout", 3));
  constexpr int kMessages = 10000 / kScale;
  for (int i = 0; i < kMessages; ++i) {
    const micro::Error e = publish("fanout", i);
    ASSERT_TRUE(e.ok()) << e.to_string() << " at " << i;
  }
  for (const auto& f : files) EXPECT_EQ(wait_lines(f, kMessages), numbers(0, kMessages)) << f;
}

TEST_F(BrokerCluster, AQueueGroupSplitsTheMessagesExactlyOnce) {
  std::vector<std::string> files;
  for (int i = 0; i < 3; ++i) files.push_back(start_subscriber("work", "workers"));
  ASSERT_TRUE(wait_for_subscribers("work", 3));
  constexpr int kMessages = 10000 / kScale;
  for (int i = 0; i < kMessages; ++i) {
    const micro::Error e = publish("work", i);
    ASSERT_TRUE(e.ok()) << e.to_string() << " at " << i;
  }
  std::multiset<int> all;
  const auto until = std::chrono::steady_clock::now() + 10s;
  std::vector<std::vector<std::string>> got;
  do {
    got.clear();
    all.clear();
    for (const auto& f : files) got.push_back(lines(f));
    for (const auto& g : got)
      for (const auto& l : g) all.insert(std::stoi(l));
  } while (all.size() < kMessages && std::chrono::steady_clock::now() < until);
  ASSERT_EQ(all.size(), size_t(kMessages));
  for (int i = 0; i < kMessages; ++i) ASSERT_EQ(all.count(i), 1u) << i;
  for (const auto& g : got) {
    EXPECT_GT(g.size(), kMessages / 6) << "each member takes a share";
    EXPECT_TRUE(std::is_sorted(g.begin(), g.end(), [](const std::string& a, const std::string& b) {
      return std::stoi(a) < std::stoi(b);
    })) << "a member sees its messages in publish order";
  }
}

TEST_F(BrokerCluster, AKilledSubscriberCostsOnlyItsOwnMessagesAndThePublisherIsTold) {
  std::vector<std::string> plain, queue;
  for (int i = 0; i < 3; ++i) plain.push_back(start_subscriber("mixed"));
  for (int i = 0; i < 3; ++i) queue.push_back(start_subscriber("mixed", "workers"));
  ASSERT_TRUE(wait_for_subscribers("mixed", 6));
  constexpr int kMessages = 4000 / kScale, kKillAt = 1500 / kScale;
  int failed_after_kill = 0;
  for (int i = 0; i < kMessages; ++i) {
    if (i == kKillAt) {
      stop(plain[0], SIGKILL);
      stop(queue[0], SIGKILL);
    }
    const micro::Error e = publish("mixed", i);
    if (i < kKillAt) {
      ASSERT_TRUE(e.ok()) << e.to_string() << " at " << i;
    } else if (!e.ok()) {
      ++failed_after_kill;
      if (failed_after_kill == 1) {
        EXPECT_EQ(e.code(), 503) << e.to_string();
        EXPECT_NE(e.detail().find("cannot connect"), std::string::npos) << e.to_string();
      }
    }
  }
  // The dead plain subscriber stays registered until its TTL: every later publish says so.
  EXPECT_EQ(failed_after_kill, kMessages - kKillAt);

  // Plain subscribers: the dead one got what came before its death (nothing was in flight: each
  // publish waits for its deliveries); the others got everything.
  EXPECT_EQ(lines(plain[0]), numbers(0, kKillAt));
  for (size_t i = 1; i < plain.size(); ++i)
    EXPECT_EQ(wait_lines(plain[i], kMessages), numbers(0, kMessages)) << plain[i];

  // The queue group: every message exactly once, the dead member's share moved to the others.
  std::multiset<int> all;
  const auto until = std::chrono::steady_clock::now() + 10s;
  do {
    all.clear();
    for (const auto& f : queue)
      for (const auto& l : lines(f)) all.insert(std::stoi(l));
  } while (all.size() < kMessages && std::chrono::steady_clock::now() < until);
  for (int i = 0; i < kMessages; ++i) ASSERT_EQ(all.count(i), 1u) << i;
  for (const auto& l : lines(queue[0])) EXPECT_LT(std::stoi(l), kKillAt);
}

TEST_F(BrokerCluster, MicroPublishReachesMicroSubscribe) {
  const std::string file = start_subscriber("cli", "", "--headers");
  ASSERT_TRUE(wait_for_subscribers("cli", 1));
  const std::string command = micro_binary() + " --config " + config_ +
                              " publish cli '{\"json\": \"body\"}' --header tenant=acme";
  ASSERT_EQ(std::system(command.c_str()), 0);
  const std::string nobody = micro_binary() + " --config " + config_ +
                             " publish nobody-listens '{}' 2>" + dir_ + "/nobody.txt";
  EXPECT_EQ(std::system(nobody.c_str()), 0) << "no subscriber is not a failure";
  EXPECT_NE(lines(dir_ + "/nobody.txt").at(0).find("no subscribers to 'nobody-listens'"),
            std::string::npos);
  const auto got = wait_lines(file, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0],
            "content-type=application/json micro-topic=cli tenant=acme {\"json\": \"body\"}");
  stop(file, SIGTERM);
  micro::Registry registry(stack_->registry());
  EXPECT_EQ(registry.get_service("micro.http.broker").error.code(), 404)
      << "micro subscribe deregisters when it ends";
}

// Thousands of publishes without waiting (batches, several in flight to each subscriber over
// time): every subscriber gets every message once, in publish order.
TEST_F(BrokerCluster, ABurstOfOverlappingPublishesArrivesCompleteInOrderOnceAtEverySubscriber) {
  std::vector<std::string> files;
  for (int i = 0; i < 3; ++i) files.push_back(start_subscriber("burst"));
  ASSERT_TRUE(wait_for_subscribers("burst", 3));
  constexpr int kMessages = 10000 / kScale;
  Burst burst(micro::Broker(stack_->broker()), kMessages);
  for (int i = 0; i < kMessages; ++i) burst.publish("burst", i);
  ASSERT_TRUE(burst.wait_answered(kMessages));
  for (const auto& e : burst.errors()) ASSERT_TRUE(e.ok()) << e.to_string();
  for (const auto& f : files) EXPECT_EQ(wait_lines(f, kMessages), numbers(0, kMessages)) << f;
}

// The same burst to a queue group: each message reaches exactly one member, each member sees its
// share in publish order.
TEST_F(BrokerCluster, AQueueGroupTakesABurstExactlyOnce) {
  std::vector<std::string> files;
  for (int i = 0; i < 3; ++i) files.push_back(start_subscriber("qburst", "workers"));
  ASSERT_TRUE(wait_for_subscribers("qburst", 3));
  constexpr int kMessages = 10000 / kScale;
  Burst burst(micro::Broker(stack_->broker()), kMessages);
  for (int i = 0; i < kMessages; ++i) burst.publish("qburst", i);
  ASSERT_TRUE(burst.wait_answered(kMessages));
  for (const auto& e : burst.errors()) ASSERT_TRUE(e.ok()) << e.to_string();
  std::multiset<int> all;
  std::vector<std::vector<int>> got;
  const auto until = std::chrono::steady_clock::now() + 10s;
  do {
    got.clear();
    all.clear();
    for (const auto& f : files) got.push_back(ints(lines(f)));
    for (const auto& g : got) all.insert(g.begin(), g.end());
  } while (all.size() < kMessages && std::chrono::steady_clock::now() < until);
  ASSERT_EQ(all.size(), size_t(kMessages));
  for (int i = 0; i < kMessages; ++i) ASSERT_EQ(all.count(i), 1u) << i;
  for (const auto& g : got) {
    EXPECT_GT(g.size(), 0u) << "each member takes a share";
    EXPECT_TRUE(std::is_sorted(g.begin(), g.end())) << "a member sees its share in publish order";
  }
}

// A plain subscriber and a queue member killed in the middle of a burst: the publisher is told
// (503) of every message the plain one did not get; the other plain subscribers get everything,
// in order; the queue group loses nothing (the dead member's messages move on to the live one,
// message by message; only what the dead one took before dying may arrive twice).
TEST_F(BrokerCluster, ASubscriberKilledMidBurstIsReportedForWhatItLost) {
  std::vector<std::string> plain, queue;
  for (int i = 0; i < 3; ++i) plain.push_back(start_subscriber("mid"));
  for (int i = 0; i < 2; ++i) queue.push_back(start_subscriber("mid", "workers"));
  ASSERT_TRUE(wait_for_subscribers("mid", 5));
  constexpr int kMessages = 6000 / kScale;
  Burst burst(micro::Broker(stack_->broker()), kMessages);
  for (int i = 0; i < kMessages / 3; ++i) burst.publish("mid", i);
  ASSERT_TRUE(burst.wait_answered(kMessages / 6));  // the burst is on its way
  stop(plain[0], SIGKILL);
  stop(queue[0], SIGKILL);
  for (int i = kMessages / 3; i < kMessages; ++i) burst.publish("mid", i);
  ASSERT_TRUE(burst.wait_answered(kMessages));

  const auto errors = burst.errors();
  const std::vector<int> dead = ints(lines(plain[0]));
  std::set<int> dead_got(dead.begin(), dead.end());
  EXPECT_EQ(dead, numbers_int(0, static_cast<int>(dead.size())))
      << "the dead one got a prefix, in order";
  EXPECT_LT(dead.size(), size_t(kMessages)) << "it died before the end";
  EXPECT_GE(dead.size(), size_t(kMessages / 6)) << "what was answered before the kill reached it";
  int reported = 0;
  for (int i = 0; i < kMessages; ++i) {
    if (dead_got.count(i) != 0) continue;
    ASSERT_FALSE(errors[i].ok()) << "message " << i << " never reached the dead subscriber";
    EXPECT_EQ(errors[i].code(), 503) << errors[i].to_string();
    EXPECT_NE(errors[i].detail().find("failed"), std::string::npos) << errors[i].to_string();
    ++reported;
  }
  EXPECT_GT(reported, 0);
  for (size_t i = 1; i < plain.size(); ++i)
    EXPECT_EQ(wait_lines(plain[i], kMessages), numbers(0, kMessages)) << plain[i];
  const std::vector<int> dead_member = ints(lines(queue[0]));
  const std::set<int> dead_member_got(dead_member.begin(), dead_member.end());
  EXPECT_GT(dead_member.size(), 0u) << "the killed member had a share before it died";
  std::multiset<int> all;
  const auto until = std::chrono::steady_clock::now() + 10s;
  do {
    all = std::multiset<int>(dead_member.begin(), dead_member.end());
    for (int n : ints(lines(queue[1]))) all.insert(n);
  } while (std::set<int>(all.begin(), all.end()).size() < size_t(kMessages) &&
           std::chrono::steady_clock::now() < until);
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_GE(all.count(i), 1u) << i << " reached the queue group";
    if (all.count(i) > 1) {
      EXPECT_EQ(dead_member_got.count(i), 1u) << i << ": a duplicate only from the dead member";
    }
    ASSERT_LE(all.count(i), 2u) << i;
  }
}

}  // namespace
