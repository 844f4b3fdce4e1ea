# runtime/clone: clone_file on the local file system (C), reflinks on a loop-mounted XFS and
# the ext4 fallback through `shed-server clone` (Python; needs root and loop devices).
add_executable(test_clone ${CMAKE_CURRENT_LIST_DIR}/test_clone.c)
target_link_libraries(test_clone PRIVATE shed_runtime)
shed_c_test(runtime.clone.file test_clone)
shed_python_test(runtime.clone.reflink ${CMAKE_CURRENT_LIST_DIR}/test_clone_reflink.py)
