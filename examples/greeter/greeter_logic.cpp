#include "greeter_logic.hpp"

namespace greeter {

micro::Error Greeter::Hello(const Request& request, Response& response) {
  if (request.name().empty()) return micro::Error::bad_request("name is empty: who is it for?");
  response.set_msg("Hello " + request.name());
  return {};
}

micro::Error Greeter::Stream(const StreamRequest& request, micro::ServerWriter<Response>& writer) {
  if (request.count() < 0 || request.count() > 100000)
    return micro::Error::bad_request("count must be between 0 and 100000");
  for (int i = 1; i <= request.count(); ++i) {
    Response response;
    response.set_msg("Hello " + request.name() + " #" + std::to_string(i));
    if (micro::Error e = writer.send(response); !e.ok()) return e;
  }
  return {};
}

micro::Error Greeter::Collect(micro::ServerReader<Request>& reader, Response& response) {
  std::string names;
  while (true) {
    auto next = reader.recv();
    if (!next.ok()) return next.error;
    if (!next.value) break;
    names += (names.empty() ? "" : ", ") + next.value->name();
  }
  response.set_msg("Hello " + names);
  return {};
}

micro::Error Greeter::Chat(micro::ServerReaderWriter<Request, Response>& stream) {
  while (true) {
    auto next = stream.recv();
    if (!next.ok()) return next.error;
    if (!next.value) return {};
    Response response;
    response.set_msg("Hello " + next.value->name());
    if (micro::Error e = stream.send(response); !e.ok()) return e;
  }
}

}  // namespace greeter
