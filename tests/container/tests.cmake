# container: the runc backend, end to end, as root with real runc, loop devices and a real
# Debian image with tmux (tests/container/fixture_image.py, cached in build-cache/ beside the
# build dirs so Release and Asan share it). Every test skips with 77 and a printed reason when
# it cannot run here (not root, no runc, no loop devices, Debian mirror unreachable).

# backend_driver: the backend without the HTTP server (built next to shed-init, where the
# backend looks for it).
add_executable(backend_driver ${SHED_TEST_DIR}/container/backend_driver.c)
target_link_libraries(backend_driver PRIVATE shed_runtime Threads::Threads)

get_filename_component(SHED_CONTAINER_CACHE ${CMAKE_BINARY_DIR}/../build-cache ABSOLUTE)
set(container_test_env
    SHED_SERVER=$<TARGET_FILE:shed-server>
    SHED_BACKEND_DRIVER=$<TARGET_FILE:backend_driver>
    SHED_FIXTURES=${SHED_FIXTURES}
    SHED_BUILD_CACHE=${SHED_CONTAINER_CACHE}
    PYTHONDONTWRITEBYTECODE=1)
if(TARGET shed)
  list(APPEND container_test_env SHED_CLI=$<TARGET_FILE:shed>)
endif()

foreach(suite BackendTest ServerTest ConcurrencyTest)
  add_test(NAME container.${suite}
           COMMAND python3 ${SHED_TEST_DIR}/container/test_container.py ${suite})
  set_tests_properties(container.${suite} PROPERTIES
                       ENVIRONMENT "${container_test_env}"
                       SKIP_RETURN_CODE 77
                       RUN_SERIAL TRUE
                       TIMEOUT 1200)
endforeach()

# Egress networking (container_network mode bridge): the test re-executes itself under
# `unshare --net`, so bridges, veths and NAT rules only ever exist in its own namespace.
foreach(suite BridgeTest NoneTest)
  add_test(NAME container.network.${suite}
           COMMAND python3 ${SHED_TEST_DIR}/container/test_network.py ${suite})
  set_tests_properties(container.network.${suite} PROPERTIES
                       ENVIRONMENT "${container_test_env}"
                       SKIP_RETURN_CODE 77
                       RUN_SERIAL TRUE
                       TIMEOUT 1200)
endforeach()
