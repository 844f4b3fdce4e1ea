# runtime/host_key: the server's ed25519 host key, read back by OpenSSH's own ssh-keygen.
add_executable(test_host_key ${CMAKE_CURRENT_LIST_DIR}/test_host_key.c)
target_link_libraries(test_host_key PRIVATE shed_runtime)
shed_c_test(runtime.host_key test_host_key)
