// Helpers shared by the caller-side wrappers (micro::Codec, micro::Transport, ...): the error for a
// vtable member an older module lacks, and the blocking forms built on the asynchronous calls.
#pragma once

#include <future>
#include <memory>
#include <string>
#include <utility>

#include "micro/error.hpp"

namespace micro::detail {

// The error a wrapper returns for a vtable member the module does not have (NULL, or past the end
// of a vtable built against an older SDK).
inline Error missing(const char* kind, const char* what) {
  return Error::not_implemented(std::string("this ") + kind + " module does not implement " + what +
                                " (built against an older SDK?)");
}

// Starts an operation that completes with a Done and blocks until it has. Never call a blocking
// form on a thread its completion needs (a module's callback thread): it would wait forever.
template <class Start>
Error wait_done(Start&& start) {
  auto promise = std::make_shared<std::promise<Error>>();
  auto future = promise->get_future();
  start([promise](const Error& error) { promise->set_value(error); });
  return future.get();
}

// The same for an operation whose completion also carries a value, converted to T.
template <class T, class Start>
Result<T> wait_result(Start&& start) {
  auto promise = std::make_shared<std::promise<Result<T>>>();
  auto future = promise->get_future();
  start([promise](const Error& error, auto&& value) {
    promise->set_value(Result<T>{error, T(std::forward<decltype(value)>(value))});
  });
  return future.get();
}

}  // namespace micro::detail
