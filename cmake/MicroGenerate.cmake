# micro_generate(TARGET target PROTOS a.proto ... [IMPORT_DIRS dir ...] [OUT_DIR dir])
#
# Runs protoc on each .proto with --cpp_out and --micro_out (protoc-gen-micro) and compiles the
# results into `target`: <name>.pb.cc and <name>.micro.cc, with their directory on the target's
# include path and protobuf and the SDK linked. Include "<name>.micro.h" to use the typed clients,
# handler base classes and event helpers. One line in a user's CMakeLists:
#
#   micro_generate(TARGET greeter-service PROTOS greeter.proto)
#
# Each .proto is found relative to the first IMPORT_DIRS entry that holds it (default: its own
# directory), which also decides the generated names: with IMPORT_DIRS proto, proto/a/b.proto
# gives a/b.pb.h and a/b.micro.h. Outputs go to OUT_DIR (default: the current binary dir).
function(micro_generate)
  cmake_parse_arguments(ARG "" "TARGET;OUT_DIR" "PROTOS;IMPORT_DIRS" ${ARGN})
  if(NOT ARG_TARGET OR NOT ARG_PROTOS)
    message(FATAL_ERROR "micro_generate: give TARGET and PROTOS (micro_generate(TARGET t PROTOS a.proto))")
  endif()
  if(NOT TARGET ${ARG_TARGET})
    message(FATAL_ERROR "micro_generate: no target '${ARG_TARGET}': add_library/add_executable it first")
  endif()
  if(NOT TARGET protobuf::protoc OR NOT TARGET protobuf::libprotobuf)
    find_package(Protobuf REQUIRED)
  endif()
  if(NOT TARGET micro::protoc-gen-micro)
    message(FATAL_ERROR "micro_generate: micro::protoc-gen-micro is missing from this micro build")
  endif()
  if(NOT ARG_OUT_DIR)
    set(ARG_OUT_DIR ${CMAKE_CURRENT_BINARY_DIR})
  endif()

  set(import_dirs)
  foreach(dir ${ARG_IMPORT_DIRS})
    get_filename_component(dir ${dir} ABSOLUTE)
    list(APPEND import_dirs ${dir})
  endforeach()

  set(generated_sources)
  foreach(proto ${ARG_PROTOS})
    get_filename_component(proto ${proto} ABSOLUTE)
    # The import dir that holds the file, and the file's name relative to it.
    set(root)
    foreach(dir ${import_dirs})
      file(RELATIVE_PATH rel ${dir} ${proto})
      if(NOT rel MATCHES "^\\.\\./")
        set(root ${dir})
        break()
      endif()
    endforeach()
    if(NOT root)
      get_filename_component(root ${proto} DIRECTORY)
    endif()
    file(RELATIVE_PATH rel ${root} ${proto})
    string(REGEX REPLACE "\\.proto$" "" base ${rel})

    set(include_flags -I ${root})
    foreach(dir ${import_dirs})
      if(NOT dir STREQUAL root)
        list(APPEND include_flags -I ${dir})
      endif()
    endforeach()

    set(outputs ${ARG_OUT_DIR}/${base}.pb.cc ${ARG_OUT_DIR}/${base}.pb.h
                ${ARG_OUT_DIR}/${base}.micro.cc ${ARG_OUT_DIR}/${base}.micro.h)
    add_custom_command(
      OUTPUT ${outputs}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${ARG_OUT_DIR}
      COMMAND protobuf::protoc
              --plugin=protoc-gen-micro=$<TARGET_FILE:micro::protoc-gen-micro>
              --cpp_out=${ARG_OUT_DIR} --micro_out=${ARG_OUT_DIR} ${include_flags} ${proto}
      DEPENDS ${proto} protobuf::protoc micro::protoc-gen-micro
      COMMENT "protoc-gen-micro: ${rel}"
      VERBATIM)
    list(APPEND generated_sources ${ARG_OUT_DIR}/${base}.pb.cc ${ARG_OUT_DIR}/${base}.micro.cc)
  endforeach()

  target_sources(${ARG_TARGET} PRIVATE ${generated_sources})
  target_include_directories(${ARG_TARGET} PUBLIC ${ARG_OUT_DIR})
  # Properties rather than target_link_libraries, which would force its keyword (or plain)
  # signature on every other call the user makes for this target.
  set_property(TARGET ${ARG_TARGET} APPEND PROPERTY LINK_LIBRARIES micro::sdk protobuf::libprotobuf)
  get_target_property(type ${ARG_TARGET} TYPE)
  if(NOT type STREQUAL "EXECUTABLE")
    set_property(TARGET ${ARG_TARGET} APPEND PROPERTY
      INTERFACE_LINK_LIBRARIES micro::sdk protobuf::libprotobuf)
  endif()
endfunction()
