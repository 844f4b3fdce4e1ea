# structure: the module boundaries and the style, checked by every test run.
#
# The build enforces the boundaries (see shed_module in the root CMakeLists.txt); the probes
# prove it does: each is an object library outside the default build, compiled at test time
# with a module's include path (it links the module). A probe of a forbidden include passes
# only if compiling fails because the header is out of reach; the control probe, a door the
# module may use, must compile, so the refusals are not the include path being broken.
set(SHED_STRUCTURE_DIR ${CMAKE_CURRENT_LIST_DIR})

# shed_include_probe(<probe> <module library> --compiles | --cannot-find <header>)
function(shed_include_probe probe library)
  add_library(probe_${probe} OBJECT EXCLUDE_FROM_ALL ${SHED_STRUCTURE_DIR}/probes/${probe}.c)
  target_link_libraries(probe_${probe} PRIVATE ${library})
  shed_python_test(structure.boundary.${probe} ${SHED_STRUCTURE_DIR}/check_probe.py
                   ARGS ${CMAKE_COMMAND} ${CMAKE_BINARY_DIR} probe_${probe} ${ARGN})
  # Probes build in the build tree: one at a time.
  set_tests_properties(structure.boundary.${probe} PROPERTIES RESOURCE_LOCK shed_build_tree)
endfunction()

shed_include_probe(runtime_includes_server shed_runtime --cannot-find server/server.h)
shed_include_probe(runtime_includes_imaged_private shed_runtime
                   --cannot-find imaged/cache_internal.h)
shed_include_probe(runtime_includes_oci_private shed_runtime --cannot-find oci/oci_private.h)
shed_include_probe(runtime_includes_imaged_door shed_runtime --compiles)

# The include-direction rule over the whole tree, with file:line and the rule broken; and
# the checker itself on trees made to break each rule.
shed_python_test(structure.include_direction ${SHED_STRUCTURE_DIR}/check_includes.py
                 ARGS ${CMAKE_SOURCE_DIR})
shed_python_test(structure.include_rules ${SHED_STRUCTURE_DIR}/test_check_includes.py)

# clang-format --dry-run -Werror over every tracked .c/.h file.
shed_python_test(structure.clang_format ${SHED_STRUCTURE_DIR}/check_format.py
                 ARGS ${CMAKE_SOURCE_DIR})

# Every skip goes through testrun.py or check.h, where SHED_TEST_STRICT reaches it.
shed_python_test(structure.skips_through_harness ${SHED_STRUCTURE_DIR}/check_skips.py
                 ARGS ${CMAKE_SOURCE_DIR})
