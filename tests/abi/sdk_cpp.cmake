# The SDK's header-only C++ side, tested through the C ABI with in-test plugins. Included from
# tests/abi/CMakeLists.txt.
micro_add_gtest(sdk_cpp_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/sdk_cpp_test.cpp
  LIBRARIES micro_sdk)
