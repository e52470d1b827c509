# micro_add_module(NAME [RESIDENT] SOURCES... [LIBRARIES libs...])
#
# Builds a micro module: a shared library named NAME.so (no "lib" prefix, so the file, the folder
# and the TOML name all read the same) that exports only `micro_module_entry`.
#
# RESIDENT: once loaded, the module stays mapped until the process ends (-z nodelete). Use it for
# a module that compiles generated protobuf code (protobuf_generate): the generated code registers
# its descriptors in libprotobuf's global pool when the module loads and nothing takes them out
# when it is unloaded, so loading it again in the same process (a second stack, a reloaded
# config) would abort in libprotobuf ("File already exists in database").
function(micro_add_module name)
  cmake_parse_arguments(ARG "RESIDENT" "" "SOURCES;LIBRARIES" ${ARGN})
  if(NOT ARG_SOURCES)
    set(ARG_SOURCES ${ARG_UNPARSED_ARGUMENTS})
  endif()
  add_library(${name} MODULE ${ARG_SOURCES})
  if(TARGET micro_sdk)
    target_link_libraries(${name} PRIVATE micro_sdk)
  else()
    target_link_libraries(${name} PRIVATE micro::sdk)
  endif()
  if(ARG_LIBRARIES)
    target_link_libraries(${name} PRIVATE ${ARG_LIBRARIES})
  endif()
  if(NOT MICRO_MODULE_MAP)
    set(MICRO_MODULE_MAP ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/module.map)
  endif()
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    OUTPUT_NAME ${name}
    CXX_VISIBILITY_PRESET hidden
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LINK_DEPENDS ${MICRO_MODULE_MAP})
  if(DEFINED MICRO_MODULE_OUTPUT_DIR)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${MICRO_MODULE_OUTPUT_DIR})
  endif()
  if(NOT APPLE AND NOT WIN32)
    target_link_options(${name} PRIVATE
      "LINKER:--version-script=${MICRO_MODULE_MAP}" "LINKER:--exclude-libs,ALL" "LINKER:--no-undefined")
    if(ARG_RESIDENT)
      target_link_options(${name} PRIVATE "LINKER:-z,nodelete")
    endif()
  endif()
endfunction()
