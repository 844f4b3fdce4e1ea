# api: the instance store (C unit test) and a real `shed-server serve` driven over HTTP and
# through the `shed` CLI (Python integration tests; each test starts and stops its server).
add_executable(test_api_instance ${CMAKE_CURRENT_LIST_DIR}/test_instance.c)
target_link_libraries(test_api_instance PRIVATE shed_runtime Threads::Threads)
add_test(NAME api_instance COMMAND test_api_instance)

find_package(Python3 REQUIRED COMPONENTS Interpreter)
add_test(NAME api_server
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/test_api.py
                 --shed-server $<TARGET_FILE:shed-server> --shed $<TARGET_FILE:shed>)
set_tests_properties(api_server PROPERTIES TIMEOUT 600)

# POST /api/sheds end to end with the real container backend, and /api/images: as root with
# runc, loop devices and docker-registry (skips with 77 and the reason otherwise).
add_test(NAME api_create
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/test_create.py
                 --shed-server $<TARGET_FILE:shed-server> --shed $<TARGET_FILE:shed>)
set_tests_properties(api_create PROPERTIES TIMEOUT 1200 SKIP_RETURN_CODE 77 RUN_SERIAL TRUE
                     ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
