# Instance clones: clone_file on the local file system (C), reflinks on a loop-mounted XFS
# and the ext4 fallback through `shed-server clone` (Python; needs root and loop devices,
# skipped otherwise).
add_executable(test_clone ${SHED_TEST_DIR}/clone/test_clone.c)
target_link_libraries(test_clone PRIVATE shed_runtime)
add_test(NAME clone_file COMMAND test_clone)
set_tests_properties(clone_file PROPERTIES SKIP_RETURN_CODE 77)

add_test(NAME clone_reflink
         COMMAND python3 ${SHED_TEST_DIR}/clone/test_clone_reflink.py
         WORKING_DIRECTORY ${SHED_TEST_DIR}/clone)
set_tests_properties(clone_reflink PROPERTIES SKIP_RETURN_CODE 77
  ENVIRONMENT "SHED_SERVER=$<TARGET_FILE:shed-server>;PYTHONPATH=${SHED_FIXTURES};PYTHONDONTWRITEBYTECODE=1")
