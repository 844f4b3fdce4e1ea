# server: a real `shed-server serve` driven over HTTP and through the `shed` CLI (each test
# starts and stops its own server), and POST /api/sheds end to end with the real container
# backend (as root with runc, loop devices and docker-registry).
shed_python_test(server.api ${CMAKE_CURRENT_LIST_DIR}/test_api.py
                 ARGS --shed-server $<TARGET_FILE:shed-server> --shed $<TARGET_FILE:shed>)
shed_python_test(server.create ${CMAKE_CURRENT_LIST_DIR}/test_create.py
                 ARGS --shed-server $<TARGET_FILE:shed-server> --shed $<TARGET_FILE:shed>
                 TIMEOUT 1200 SERIAL)
shed_python_test(server.reload ${CMAKE_CURRENT_LIST_DIR}/test_reload.py
                 ARGS --shed-server $<TARGET_FILE:shed-server> ReloadTest
                      PullImagesTellsTheServerTest)
shed_python_test(server.reload.create ${CMAKE_CURRENT_LIST_DIR}/test_reload.py
                 ARGS --shed-server $<TARGET_FILE:shed-server> ReloadCreateTest SERIAL)
