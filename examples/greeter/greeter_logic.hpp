// The greeter's business logic, written once against the generated handler base class and used
// by both the handler module and the plain program.
#pragma once

#include "greeter.micro.h"

namespace greeter {

class Greeter final : public GreeterHandler {
 public:
  micro::Error Hello(const Request& request, Response& response) override;
  micro::Error Stream(const StreamRequest& request, micro::ServerWriter<Response>& writer) override;
  micro::Error Collect(micro::ServerReader<Request>& reader, Response& response) override;
  micro::Error Chat(micro::ServerReaderWriter<Request, Response>& stream) override;
};

}  // namespace greeter
