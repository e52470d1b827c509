// Selector, C++ side: SelectorPlugin (implement it in a module) and Selector (call one).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "micro/caller.hpp"
#include "micro/plugin.hpp"
#include "micro/selector.h"

namespace micro {

struct SelectOptions {
  std::string strategy;                       // "random", "round_robin"; empty: module default
  std::vector<std::string> exclude_node_ids;  // nodes already tried for this call
};

// Receives the chosen node, or the error (404/503 when none is available; the node is then empty).
using NodeCallback = std::function<void(const Error&, const Node&)>;

// A C view of a Node, borrowing its strings. Keep the node alive and unchanged while it is used.
class NodeView {
 public:
  explicit NodeView(const Node& node)
      : metadata_(node.metadata),
        c_{sizeof(micro_node_t), to_c(node.id), to_c(node.address), metadata_.c()} {}
  NodeView(const NodeView&) = delete;
  NodeView& operator=(const NodeView&) = delete;
  const micro_node_t* c() const noexcept { return &c_; }

 private:
  MetadataView metadata_;
  micro_node_t c_;
};

// ---- module side ---------------------------------------------------------------------------

// Implement this in a selector module. Methods may be called from any thread at once; each
// completion must be called exactly once, on any thread.
class SelectorPlugin : public PluginBase {
 public:
  using KindBase = SelectorPlugin;
  static constexpr micro_kind_t kind = MICRO_KIND_SELECTOR;

  virtual void select(const std::string& service, const SelectOptions& options,
                      NodeCallback done) = 0;
  // Reports a call's outcome on a node (`outcome` ok for success); a failure may blacklist it.
  virtual void mark(const std::string& service, const std::string& node_id,
                    const Error& outcome) = 0;
  // Forgets what is cached and marked for `service`.
  virtual void reset(const std::string& service) = 0;

  // Optional fast paths for the C calls, for a selector on every call's path. select_c answers
  // a select itself, calling `done` exactly once (any thread) with a node view that needs to live
  // only for the callback, and returns true; false, having done nothing, takes the ordinary path
  // through select(). mark_view takes the strings as views; the default copies them for mark().
  virtual bool select_c(std::string_view service, const micro_select_options_t& options,
                        micro_node_fn done, void* ctx) noexcept {
    (void)service, (void)options, (void)done, (void)ctx;
    return false;
  }
  virtual void mark_view(std::string_view service, std::string_view node_id,
                         const Error& outcome) {
    mark(std::string(service), std::string(node_id), outcome);
  }

  static const void* c_vtable() noexcept;
};

namespace detail {

// The module side of a micro_node_fn completion: copyable, calls the C callback at most once.
class CNodeCompletion {
 public:
  CNodeCompletion(micro_node_fn fn, void* ctx) : once_(fn, ctx) {}
  void operator()(const Error& error, const Node& node) const noexcept {
    micro_node_fn fn = once_.take();
    if (fn == nullptr) return;
    if (!error.ok()) return fail(fn, error);
    std::optional<NodeView> view;
    const Error failure = guarded([&] { view.emplace(node); });
    if (!failure.ok()) return fail(fn, failure);
    fn(once_.ctx(), nullptr, view->c());
  }
  void operator()(const Error& error) const noexcept {
    if (micro_node_fn fn = once_.take()) fail(fn, error);
  }

 private:
  void fail(micro_node_fn fn, const Error& error) const noexcept {
    const micro_error_t view = error.view();
    fn(once_.ctx(), &view, nullptr);
  }
  OnceFlag<micro_node_fn> once_;
};

// Converts the C calls on micro_selector_vtable_t into SelectorPlugin's virtuals.
struct SelectorAdapter {
  static SelectorPlugin* as(void* self) noexcept { return static_cast<SelectorPlugin*>(self); }

  static void destroy(void* self) noexcept {
    (void)guarded([&] { delete as(self); });
  }

  static void select(void* self, micro_str_t service, const micro_select_options_t* options,
                     micro_node_fn on_selected, void* ctx) noexcept {
    const micro_select_options_t o = read_struct(options);
    if (on_selected != nullptr && as(self)->select_c(to_view(service), o, on_selected, ctx))
      return;
    CNodeCompletion complete(on_selected, ctx);
    guarded_async(complete, [&] {
      SelectOptions converted{std::string(to_view(o.strategy)), {}};
      for (size_t i = 0; i < o.exclude_count && o.exclude_node_ids != nullptr; ++i)
        converted.exclude_node_ids.emplace_back(to_view(o.exclude_node_ids[i]));
      as(self)->select(std::string(to_view(service)), converted, complete);
    });
  }

  static void mark(void* self, micro_str_t service, micro_str_t node_id,
                   const micro_error_t* error) noexcept {
    (void)guarded(
        [&] { as(self)->mark_view(to_view(service), to_view(node_id), Error::from_c(error)); });
  }

  static void reset(void* self, micro_str_t service) noexcept {
    (void)guarded([&] { as(self)->reset(std::string(to_view(service))); });
  }
};

}  // namespace detail

inline const void* SelectorPlugin::c_vtable() noexcept {
  static const micro_selector_vtable_t vtable = {
      sizeof(micro_selector_vtable_t), &detail::SelectorAdapter::destroy,
      &detail::SelectorAdapter::select, &detail::SelectorAdapter::mark,
      &detail::SelectorAdapter::reset};
  return &vtable;
}

// ---- caller side ---------------------------------------------------------------------------

// Calls a selector instance through its C vtable. Does not own the instance (the host does);
// copyable. Each operation has an asynchronous form and a blocking convenience.
class Selector {
 public:
  Selector() = default;
  explicit Selector(micro_selector_t handle) noexcept
      : vtable_(read_struct(handle.vtable)), self_(handle.self) {}

  bool valid() const noexcept { return self_ != nullptr; }

  void select(std::string_view service, const SelectOptions& options, NodeCallback done) const {
    if (!vtable_.select) return done(detail::missing("selector", "select"), Node{});
    std::vector<micro_str_t> excluded;
    excluded.reserve(options.exclude_node_ids.size());
    for (const auto& id : options.exclude_node_ids) excluded.push_back(to_c(id));
    const micro_select_options_t o{sizeof(micro_select_options_t), to_c(options.strategy),
                                   excluded.data(), excluded.size()};
    vtable_.select(self_, to_c(service), &o, &node_trampoline, detail::box(std::move(done)));
  }
  // The C form, for a caller on every call's path: `done` receives the node as a view, valid
  // only during the callback; nothing is boxed or copied here. `done` is called exactly once.
  void select_c(std::string_view service, const micro_select_options_t& options,
                micro_node_fn done, void* ctx) const {
    if (!vtable_.select) {
      const Error missing = detail::missing("selector", "select");
      const micro_error_t view = missing.view();
      return done(ctx, &view, nullptr);
    }
    vtable_.select(self_, to_c(service), &options, done, ctx);
  }
  Result<Node> select(std::string_view service, const SelectOptions& options = {}) const {
    return detail::wait_result<Node>(
        [&](NodeCallback d) { select(service, options, std::move(d)); });
  }

  // Reports a call's outcome on a node (`outcome` ok for success).
  Error mark(std::string_view service, std::string_view node_id, const Error& outcome) const {
    if (!vtable_.mark) return detail::missing("selector", "mark");
    const micro_error_t view = outcome.view();
    vtable_.mark(self_, to_c(service), to_c(node_id), outcome.ok() ? nullptr : &view);
    return Error{};
  }

  // Forgets what is cached and marked for `service`.
  Error reset(std::string_view service) const {
    if (!vtable_.reset) return detail::missing("selector", "reset");
    vtable_.reset(self_, to_c(service));
    return Error{};
  }

 private:
  static void node_trampoline(void* ctx, const micro_error_t* error,
                              const micro_node_t* node) noexcept {
    auto fn = detail::unbox<NodeCallback>(ctx);
    (void)detail::guarded([&] {
      Error e = Error::from_c(error);
      if (e.ok() && node == nullptr)
        e = Error::unavailable("the selector returned neither a node nor an error");
      (*fn)(e, e.ok() ? from_c(node) : Node{});
    });
  }

  micro_selector_vtable_t vtable_{};
  void* self_ = nullptr;
};

}  // namespace micro
