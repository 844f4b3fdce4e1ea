# Writes the ctest entries of a C test binary from its own `--list` (tests/harness/check.h),
# the way gtest_discover_tests does, so the list of tests is kept in one place: the binary's
# test table. Run after every link of the binary (shed_c_test in tests/CMakeLists.txt):
#
#   cmake -DTEST_BINARY=<path> -DTEST_PREFIX=<prefix> -DTEST_TIMEOUT=<s> -DOUTPUT=<file>
#         -P discover.cmake
#
# Each test NAME becomes the ctest entry <prefix>.<NAME> running `<binary> NAME`; exit 77 is
# a skip.
foreach(var TEST_BINARY TEST_PREFIX TEST_TIMEOUT OUTPUT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "discover.cmake: ${var} not set")
  endif()
endforeach()

execute_process(COMMAND ${TEST_BINARY} --list OUTPUT_VARIABLE listing ERROR_VARIABLE errors
                RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "${TEST_BINARY} --list failed (${status}): ${errors}")
endif()

string(REPLACE "\n" ";" names "${listing}")
set(entries "# Generated from `${TEST_BINARY} --list` by tests/harness/discover.cmake.\n")
set(count 0)
foreach(name IN LISTS names)
  if(name STREQUAL "")
    continue()
  endif()
  if(NOT name MATCHES "^[A-Za-z_][A-Za-z0-9_]*$")
    message(FATAL_ERROR "${TEST_BINARY} --list: \"${name}\" is not a C identifier")
  endif()
  set(test "${TEST_PREFIX}.${name}")
  string(APPEND entries "add_test([==[${test}]==] [==[${TEST_BINARY}]==] [==[${name}]==])\n"
         "set_tests_properties([==[${test}]==] PROPERTIES SKIP_RETURN_CODE 77"
         " TIMEOUT ${TEST_TIMEOUT})\n")
  math(EXPR count "${count} + 1")
endforeach()
if(count EQUAL 0)
  message(FATAL_ERROR "${TEST_BINARY} --list lists no tests")
endif()

# Replaced in one rename, so a ctest started meanwhile reads the old list or the new one.
file(WRITE ${OUTPUT}.tmp "${entries}")
file(RENAME ${OUTPUT}.tmp ${OUTPUT})
