# Image cache area: server.yaml parsing (C) and pull-images / images commands (Python,
# against a loopback docker-registry).
add_executable(test_config ${SHED_TEST_DIR}/cache/test_config.c)
target_link_libraries(test_config PRIVATE shed_common)
add_test(NAME cache_config COMMAND test_config)

add_test(NAME cache_pull_images
         COMMAND python3 ${SHED_TEST_DIR}/cache/test_pull_images.py)
set_tests_properties(cache_pull_images PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 900
  ENVIRONMENT "SHED_SERVER=$<TARGET_FILE:shed-server>;PYTHONPATH=${SHED_FIXTURES};PYTHONDONTWRITEBYTECODE=1")
