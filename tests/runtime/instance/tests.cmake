# runtime/instance: the instance store (metadata.json, locks, listing cache).
add_executable(test_instance ${CMAKE_CURRENT_LIST_DIR}/test_instance.c)
target_link_libraries(test_instance PRIVATE shed_runtime Threads::Threads)
shed_c_test(runtime.instance test_instance)
