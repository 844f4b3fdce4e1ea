# oci: reference parsing and the walks over the store (C unit tests) and pulls from a real
# docker-registry on loopback (Python integration tests; each file starts and stops its own
# registry).
add_executable(test_oci_ref ${CMAKE_CURRENT_LIST_DIR}/test_ref.c)
target_link_libraries(test_oci_ref PRIVATE shed_oci)
shed_c_test(oci.ref test_oci_ref)
add_executable(test_oci_store ${CMAKE_CURRENT_LIST_DIR}/test_store.c)
target_link_libraries(test_oci_store PRIVATE shed_oci)
shed_c_test(oci.store test_oci_store)
# oci_resolve_tool: oci_resolve from the command line, for the pull tests.
add_executable(oci_resolve_tool ${CMAKE_CURRENT_LIST_DIR}/resolve_tool.c)
target_link_libraries(oci_resolve_tool PRIVATE shed_oci)

foreach(area pull auth resume tls)
  shed_python_test(oci.${area} ${CMAKE_CURRENT_LIST_DIR}/test_${area}.py
                   ARGS --shed-server $<TARGET_FILE:shed-server>)
endforeach()
# The parsers of what a registry sends, under libFuzzer or over their corpora.
shed_fuzz_target(manifest ${CMAKE_CURRENT_LIST_DIR}/fuzz_manifest.c LIBS shed_oci)
shed_fuzz_target(www_authenticate ${CMAKE_CURRENT_LIST_DIR}/fuzz_www_authenticate.c LIBS shed_oci)
