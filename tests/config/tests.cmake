# config: server.yaml parsing and validation.
add_executable(test_config ${CMAKE_CURRENT_LIST_DIR}/test_config.c)
target_link_libraries(test_config PRIVATE shed_config)
shed_c_test(config.server_yaml test_config)
