# common: the toolbox every module uses (I/O helpers, timestamps, string vectors, array growth,
# cleanup attributes) and durable atomic file writes.
add_executable(test_common_io ${CMAKE_CURRENT_LIST_DIR}/test_io.c)
target_link_libraries(test_common_io PRIVATE shed_common shed_test_harness Threads::Threads)
shed_c_test(common.io test_common_io)

add_executable(test_common_toolbox ${CMAKE_CURRENT_LIST_DIR}/test_toolbox.c)
target_link_libraries(test_common_toolbox PRIVATE shed_common shed_test_harness)
shed_c_test(common.toolbox test_common_toolbox)

# Regression: threads writing one file atomically used to share the temp path.tmp.<pid>.
add_executable(test_common_atomic_write ${CMAKE_CURRENT_LIST_DIR}/test_atomic_write.c)
target_link_libraries(test_common_atomic_write PRIVATE shed_common shed_test_harness
                      Threads::Threads)
shed_c_test(common.atomic_write test_common_atomic_write)
