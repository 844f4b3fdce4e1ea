# config: server.yaml parsing and validation.
add_executable(test_config ${CMAKE_CURRENT_LIST_DIR}/test_config.c)
target_link_libraries(test_config PRIVATE shed_config)
shed_c_test(config.server_yaml test_config)
# The loader under libFuzzer (Fuzz build) or over its corpus (Release, Asan).
shed_fuzz_target(config ${CMAKE_CURRENT_LIST_DIR}/fuzz_config.c LIBS shed_config)
