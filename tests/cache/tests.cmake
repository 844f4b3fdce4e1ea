# Image cache area: server.yaml parsing (C) and pull-images / images commands (Python,
# against a loopback docker-registry).
add_executable(test_config ${SHED_TEST_DIR}/cache/test_config.c)
target_link_libraries(test_config PRIVATE shed_common)
add_test(NAME cache_config COMMAND test_config)
