// The one header a module author includes: every kind's plugin base class and caller-side
// wrapper, CreateContext, micro::plugin<T>() and MICRO_MODULE.
#pragma once

#include "micro/broker.hpp"
#include "micro/client.hpp"
#include "micro/codec.hpp"
#include "micro/handler.hpp"
#include "micro/plugin.hpp"
#include "micro/registry.hpp"
#include "micro/selector.hpp"
#include "micro/server.hpp"
#include "micro/service.hpp"
#include "micro/transport.hpp"
