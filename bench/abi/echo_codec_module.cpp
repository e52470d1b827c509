// bench-echo-codec.so: EchoCodec behind the C ABI. Built into <build>/bench-modules, never into
// the real modules folder.
#include "echo_codec.hpp"

MICRO_MODULE("bench-echo-codec", "1.0.0", "Benchmark only: appends 16 fixed bytes",
             micro::plugin<micro_bench::EchoCodec>("bench-echo-codec",
                                                   "Benchmark only: appends 16 fixed bytes"));
