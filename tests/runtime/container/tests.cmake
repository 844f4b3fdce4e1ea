# runtime/container: the runc backend, end to end, as root with real runc, loop devices and a
# real Debian image with tmux (tests/fixtures/fixture_image.py, cached in build-cache/ beside
# the build dirs so Release and Asan share it). Every test skips with 77 and a printed reason
# when it cannot run here (not root, no runc, no loop devices, Debian mirror unreachable).

# backend_driver: the backend without the HTTP server (built next to shed-init, where the
# backend looks for it).
add_executable(backend_driver ${CMAKE_CURRENT_LIST_DIR}/backend_driver.c)
target_link_libraries(backend_driver PRIVATE shed_runtime Threads::Threads)

foreach(suite BackendTest ServerTest ConcurrencyTest TunnelLimitsTest)
  shed_python_test(runtime.container.${suite} ${CMAKE_CURRENT_LIST_DIR}/test_container.py
                   ARGS ${suite} TIMEOUT 1200 SERIAL)
endforeach()

# Egress networking (container_network mode bridge): the test re-executes itself under
# `unshare --net`, so bridges, veths and NAT rules only ever exist in its own namespace.
foreach(suite BridgeTest NoneTest)
  shed_python_test(runtime.container.network.${suite} ${CMAKE_CURRENT_LIST_DIR}/test_network.py
                   ARGS ${suite} TIMEOUT 1200 SERIAL)
endforeach()
