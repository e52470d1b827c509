# micro_add_gtest(NAME SOURCES... LIBRARIES... [TIMEOUT seconds]): a GoogleTest executable
# registered with ctest; each of its tests gets TIMEOUT (default 120).
# Tests find the built modules through MICRO_TEST_MODULE_DIR and the test-only modules through
# MICRO_TEST_FIXTURE_DIR.
find_package(GTest REQUIRED)
include(GoogleTest)

set(MICRO_TEST_FIXTURE_DIR ${CMAKE_BINARY_DIR}/test-modules)

function(micro_add_gtest name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;LIBRARIES" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE GTest::gtest_main ${ARG_LIBRARIES})
  micro_strict_warnings(${name})
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 30
    PROPERTIES
      TIMEOUT ${ARG_TIMEOUT}
      # One ENVIRONMENT per variable: a ';'-list would be split into separate properties.
      ENVIRONMENT "MICRO_TEST_MODULE_DIR=${MICRO_MODULE_OUTPUT_DIR}"
      ENVIRONMENT "MICRO_TEST_FIXTURE_DIR=${MICRO_TEST_FIXTURE_DIR}"
      ENVIRONMENT "MICRO_BINARY_DIR=${CMAKE_BINARY_DIR}"
      ENVIRONMENT "MICRO_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
endfunction()
