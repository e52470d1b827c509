// One service's cache entry: its nodes as the registry last told us, the nodes marked failed, the
// round-robin position, and the bookkeeping of the lookup and watch that keep it current.
//
// Every member below `mutex` is guarded by it. The selector holds the lock for a few comparisons
// per select and never while it calls out (registry, user callback), so a watch event, a lookup
// completion and any number of selects of the same service can meet here safely.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "micro/registry.hpp"
#include "micro/selector.hpp"
#include "strategy.hpp"

namespace selector_default {

using Clock = std::chrono::steady_clock;
using NodeList = std::vector<micro::Node>;

// The answer for one select: a node of `nodes` (kept alive by the pointer, so the callback can
// borrow it without a copy), or an error.
struct Pick {
  std::shared_ptr<const NodeList> nodes;
  size_t index = 0;
  micro::Error error;
};

// Node ids a C select excludes (micro_select_options_t), borrowed for the select.
struct CNodeIds {
  const micro_str_t* items = nullptr;
  size_t count = 0;
  bool empty() const noexcept { return count == 0; }
};

// A select that arrived before the service's nodes were known; answered when the lookup ends.
struct Waiter {
  Strategy strategy;
  std::vector<std::string> exclude_node_ids;
  micro::NodeCallback done;
};

// Every node of every version, in registry order; a node id seen twice keeps its last entry.
inline NodeList flatten(const std::vector<micro::Service>& services) {
  NodeList out;
  for (const auto& service : services)
    for (const auto& node : service.nodes) {
      auto same = std::find_if(out.begin(), out.end(),
                               [&](const micro::Node& n) { return n.id == node.id; });
      if (same != out.end())
        *same = node;
      else
        out.push_back(node);
    }
  return out;
}

class ServiceEntry {
 public:
  explicit ServiceEntry(std::string service_name)
      : service(std::move(service_name)), next_index_(new_seed()) {}
  // Stops the watch first, while everything its callback touches is still alive. (The selector
  // stops it earlier, outside any lock; this only guards against a path that forgot.)
  ~ServiceEntry() { watch.stop(); }
  ServiceEntry(const ServiceEntry&) = delete;
  ServiceEntry& operator=(const ServiceEntry&) = delete;

  const std::string service;
  std::mutex mutex;

  // ---- state read by select (lock held) ----

  // Known well enough to answer without the registry: a lookup has succeeded, and either there
  // are nodes or a running watch would have told us about new ones. (No nodes and no watch: the
  // "not found" may be stale, so the selector asks the registry again.)
  bool answerable_locked() const noexcept {
    return nodes_ != nullptr && (!nodes_->empty() || watch_active);
  }

  // True when the entry is older than its TTL and no lookup runs: the caller must start one
  // (this marks it started). The stale nodes keep answering meanwhile.
  bool claim_refresh_locked(Clock::time_point now) noexcept {
    if (lookup_in_flight || now < fresh_until_) return false;
    lookup_in_flight = true;
    return true;
  }

  // Chooses a node for one call. Skips excluded nodes and nodes marked failed less than
  // blacklist_ms ago; when every node left is marked, chooses among them anyway (a node that
  // failed a moment ago may work now; failing the call for certain helps nobody).
  // `Exclude` is a std::vector<std::string> or CNodeIds.
  template <class Exclude>
  Pick pick_locked(Strategy strategy, const Exclude& exclude, Clock::time_point now) {
    Pick out;
    out.nodes = nodes_;
    const NodeList& nodes = *nodes_;
    if (nodes.empty()) {
      out.error = micro::Error::not_found("service '" + service + "' not found");
      return out;
    }
    forget_expired_marks_locked(now);
    if (exclude.empty() && marks_.empty()) {  // the common case: every node is a candidate
      out.index = choose_locked(strategy, nodes.size());
      return out;
    }
    size_t allowed = 0;  // not excluded by the caller
    size_t healthy = 0;  // ... and not marked failed
    for (const auto& node : nodes) {
      if (contains(exclude, node.id)) continue;
      ++allowed;
      if (!is_marked_locked(node.id)) ++healthy;
    }
    if (allowed == 0) {
      out.error = micro::Error::unavailable(
          "service '" + service + "' has no node left to try: all " + std::to_string(nodes.size()) +
          " of its nodes were excluded by the caller");
      return out;
    }
    const bool only_healthy = healthy > 0;
    size_t wanted = choose_locked(strategy, only_healthy ? healthy : allowed);
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (contains(exclude, nodes[i].id)) continue;
      if (only_healthy && is_marked_locked(nodes[i].id)) continue;
      if (wanted-- == 0) {
        out.index = i;
        break;
      }
    }
    return out;
  }

  // ---- marks ----

  // Excludes `node_id` from selection until `until`. Ignored for a node not in the cache, so
  // marks cannot grow without bound.
  void mark_failed_locked(const std::string& node_id, Clock::time_point until) {
    if (nodes_ == nullptr || !std::any_of(nodes_->begin(), nodes_->end(),
                                          [&](const micro::Node& n) { return n.id == node_id; }))
      return;
    for (auto& mark : marks_)
      if (mark.node_id == node_id) {
        mark.until = until;
        return;
      }
    marks_.push_back({node_id, until});
  }

  void clear_mark_locked(std::string_view node_id) {
    marks_.erase(std::remove_if(marks_.begin(), marks_.end(),
                                [&](const Mark& m) { return m.node_id == node_id; }),
                 marks_.end());
  }

  // ---- updates from the registry ----

  // Applies one watch event. While a lookup runs, the event is also kept and replayed on top of
  // the lookup's answer (install_locked), because the answer may have been read before it.
  void apply_event_locked(const micro::RegistryEvent& event) {
    if (event.service.name != service) return;
    if (lookup_in_flight) events_during_lookup_.push_back(event);
    if (nodes_ == nullptr) return;  // nothing known yet: the lookup's answer comes first
    auto next = std::make_shared<NodeList>(*nodes_);
    for (const auto& node : event.service.nodes) {
      auto same = std::find_if(next->begin(), next->end(),
                               [&](const micro::Node& n) { return n.id == node.id; });
      if (event.type == micro::RegistryEventType::remove) {
        if (same != next->end()) next->erase(same);
        clear_mark_locked(node.id);
      } else if (same != next->end()) {
        *same = node;
      } else {
        next->push_back(node);
      }
    }
    nodes_ = std::move(next);
  }

  // Installs a lookup's answer (empty for a service the registry does not know), then replays
  // the events that arrived while it ran. Fresh for `ttl` from `now`.
  void install_locked(NodeList nodes, Clock::time_point now, Clock::duration ttl) {
    lookup_in_flight = false;
    nodes_ = std::make_shared<const NodeList>(std::move(nodes));
    std::vector<micro::RegistryEvent> events;
    events.swap(events_during_lookup_);
    for (const auto& event : events) apply_event_locked(event);
    fresh_until_ = now + ttl;
  }

  // Records a failed lookup: what was cached stays; the next lookup is due after `retry_after`.
  void lookup_failed_locked(Clock::time_point now, Clock::duration retry_after) {
    lookup_in_flight = false;
    events_during_lookup_.clear();
    fresh_until_ = now + retry_after;
  }

  // ---- lookup and watch bookkeeping (lock held) ----

  bool lookup_in_flight = false;
  std::vector<Waiter> waiters;  // selects waiting for the first answer
  bool watch_active = false;    // `watch` runs; events keep the nodes current
  bool watch_starting = false;  // a thread is starting the watch (outside the lock)
  bool watch_failed = false;    // a watch was refused before (warned about once)
  bool dropped = false;         // reset or destroy removed this entry: start nothing new
  micro::RegistryWatch watch;   // its callback calls apply_event_locked on this entry

 private:
  struct Mark {
    std::string node_id;
    Clock::time_point until;
  };

  static bool contains(const std::vector<std::string>& ids, const std::string& id) noexcept {
    return std::find(ids.begin(), ids.end(), id) != ids.end();
  }
  static bool contains(const CNodeIds& ids, const std::string& id) noexcept {
    for (size_t i = 0; i < ids.count; ++i)
      if (micro::to_view(ids.items[i]) == id) return true;
    return false;
  }
  bool is_marked_locked(const std::string& node_id) const noexcept {
    return std::any_of(marks_.begin(), marks_.end(),
                       [&](const Mark& m) { return m.node_id == node_id; });
  }
  void forget_expired_marks_locked(Clock::time_point now) {
    if (marks_.empty()) return;
    marks_.erase(
        std::remove_if(marks_.begin(), marks_.end(), [&](const Mark& m) { return m.until <= now; }),
        marks_.end());
  }
  // An index in [0, count): the next in turn, or a random one.
  size_t choose_locked(Strategy strategy, size_t count) noexcept {
    if (strategy == Strategy::random) return static_cast<size_t>(random_below(count));
    return static_cast<size_t>(next_index_++ % count);
  }

  std::shared_ptr<const NodeList> nodes_;  // null until a lookup has answered
  Clock::time_point fresh_until_{};
  std::vector<Mark> marks_;
  std::vector<micro::RegistryEvent> events_during_lookup_;
  uint64_t next_index_;  // round-robin position; starts anywhere so clients do not all start at
                         // the first node
};

}  // namespace selector_default
