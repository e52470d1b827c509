// Plumbing that carries C++ callables through C callbacks (a callable travels as `void* ctx`).
#pragma once

#include <atomic>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <utility>

#include "micro/error.hpp"
#include "micro/host.h"

namespace micro {

// Completion of an operation with no result.
using Done = std::function<void(const Error&)>;

// Thrown by module code to fail with a chosen error; the boundary turns it into that error.
class Exception : public std::runtime_error {
 public:
  explicit Exception(Error error) : std::runtime_error(error.to_string()), error_(std::move(error)) {}
  const Error& error() const noexcept { return error_; }

 private:
  Error error_;
};

namespace detail {

// Runs `body`; any exception becomes an error (the module's boundary never lets one through).
template <class F>
Error guarded(F&& body) noexcept {
  try {
    body();
    return Error{};
  } catch (const Exception& e) {
    return e.error();
  } catch (const std::exception& e) {
    return Error::internal(std::string("uncaught exception: ") + e.what());
  } catch (...) {
    return Error::internal("uncaught exception of unknown type");
  }
}

// A callable moved to the heap so it can travel as a C callback's ctx. The trampoline that
// receives the ctx takes it back (and so frees it) exactly once.
template <class F>
void* box(F&& fn) {
  return std::make_unique<std::decay_t<F>>(std::forward<F>(fn)).release();
}
template <class F>
std::unique_ptr<F> unbox(void* ctx) noexcept {
  return std::unique_ptr<F>(static_cast<F*>(ctx));
}

// Trampoline for micro_done_fn: calls the boxed std::function<void(const Error&)> once.
inline void done_trampoline(void* ctx, const micro_error_t* error) noexcept {
  auto fn = unbox<Done>(ctx);
  (void)guarded([&] { (*fn)(Error::from_c(error)); });
}

// A C callback of type `Fn` with its ctx, to be called at most once (copies share the flag).
template <class Fn>
class OnceFlag {
 public:
  OnceFlag(Fn fn, void* ctx) : fn_(fn), ctx_(ctx), called_(std::make_shared<std::atomic<bool>>()) {}
  // Returns the callback to call, or nullptr when it has already been called.
  Fn take() const noexcept { return called_->exchange(true) ? nullptr : fn_; }
  void* ctx() const noexcept { return ctx_; }

 private:
  Fn fn_;
  void* ctx_;
  std::shared_ptr<std::atomic<bool>> called_;
};

// The module side of a C completion: a copyable callable that calls the C callback at most once,
// so a method that completes and then throws cannot complete twice.
class CCompletion {
 public:
  CCompletion(micro_done_fn fn, void* ctx) : once_(fn, ctx) {}
  void operator()(const Error& error) const noexcept {
    micro_done_fn fn = once_.take();
    if (fn == nullptr) return;
    if (error.ok()) {
      fn(once_.ctx(), nullptr);
    } else {
      const micro_error_t view = error.view();
      fn(once_.ctx(), &view);
    }
  }

 private:
  OnceFlag<micro_done_fn> once_;
};

// Calls a once-only completion with an error when `body` throws before completing.
template <class Completion, class F>
void guarded_async(const Completion& complete, F&& body) noexcept {
  Error error = guarded(std::forward<F>(body));
  if (!error.ok()) complete(error);
}

}  // namespace detail
}  // namespace micro
