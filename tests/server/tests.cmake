# server: a real `shed-server serve` driven over HTTP and through the `shed` CLI (each test
# starts and stops its own server), and POST /api/sheds end to end with the real container
# backend (as root with runc, loop devices and docker-registry).
shed_python_test(server.api ${CMAKE_CURRENT_LIST_DIR}/test_api.py
                 ARGS --shed-server $<TARGET_FILE:shed-server> --shed $<TARGET_FILE:shed>)
shed_python_test(server.create ${CMAKE_CURRENT_LIST_DIR}/test_create.py
                 ARGS --shed-server $<TARGET_FILE:shed-server> --shed $<TARGET_FILE:shed>
                 TIMEOUT 1200 SERIAL)
# The router and the handlers' request parsing, under libFuzzer or over its corpus.
shed_fuzz_target(router ${CMAKE_CURRENT_LIST_DIR}/fuzz_router.c LIBS shed_server)
# The router without HTTP (server/route.h): what the target decoding refuses.
add_executable(test_route ${CMAKE_CURRENT_LIST_DIR}/test_route.c)
target_link_libraries(test_route PRIVATE shed_server)
shed_c_test(server.route test_route)
# Hostile clients against a real server: slow and too many connections, request deadlines,
# exposure without a token, the unix socket, paths that would change a name.
shed_python_test(server.limits ${CMAKE_CURRENT_LIST_DIR}/test_limits.py
                 ARGS --shed-server $<TARGET_FILE:shed-server>)
shed_python_test(server.reload ${CMAKE_CURRENT_LIST_DIR}/test_reload.py
                 ARGS --shed-server $<TARGET_FILE:shed-server> ReloadTest
                      PullImagesTellsTheServerTest)
shed_python_test(server.reload.create ${CMAKE_CURRENT_LIST_DIR}/test_reload.py
                 ARGS --shed-server $<TARGET_FILE:shed-server> ReloadCreateTest SERIAL)
