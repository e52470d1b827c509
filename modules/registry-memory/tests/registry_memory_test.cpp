// registry-memory runs the registry conformance suite, as every registry module does.
#include "micro/testing/registry_conformance.hpp"

INSTANTIATE_TEST_SUITE_P(Memory, RegistryConformance,
                         ::testing::Values(micro::testing::RegistryUnderTest{"registry-memory", "",
                                                                             std::chrono::seconds(2)}));
