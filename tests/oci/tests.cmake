# oci: reference parsing (C unit test) and pulls from a real docker-registry on loopback
# (Python integration tests; each file starts and stops its own registry).
add_executable(test_oci_ref ${CMAKE_CURRENT_LIST_DIR}/test_ref.c)
target_link_libraries(test_oci_ref PRIVATE shed_oci)
add_test(NAME oci_ref COMMAND test_oci_ref)
add_executable(oci_resolve_tool ${CMAKE_CURRENT_LIST_DIR}/resolve_tool.c)
target_link_libraries(oci_resolve_tool PRIVATE shed_oci)

find_package(Python3 REQUIRED COMPONENTS Interpreter)
foreach(area pull auth resume)
  add_test(NAME oci_${area}
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/test_${area}.py
                   --shed-server $<TARGET_FILE:shed-server>)
  set_tests_properties(oci_${area} PROPERTIES
                       ENVIRONMENT "SHED_FIXTURES=${SHED_FIXTURES};SHED_OCI_RESOLVE=$<TARGET_FILE:oci_resolve_tool>"
                       TIMEOUT 600)
endforeach()
