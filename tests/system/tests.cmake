# system df / prune: the library through a C test (plan vs execute races, log truncation,
# FIEMAP fallback), the local commands, the REST API and the `shed` CLI on real on-disk states
# (images pulled from a loopback registry), and reflink accounting on a loop-mounted XFS
# (root only; skipped with 77 otherwise).
add_executable(test_system_prune ${SHED_TEST_DIR}/system/test_prune.c)
target_link_libraries(test_system_prune PRIVATE shed_runtime)
add_test(NAME system_prune_library COMMAND test_system_prune)

set(system_test_env
    SHED_SERVER=$<TARGET_FILE:shed-server>
    SHED_CLI=$<TARGET_FILE:shed>
    PYTHONPATH=${SHED_FIXTURES}
    PYTHONDONTWRITEBYTECODE=1)
foreach(suite DiskUsageTest PruneTest ApiTest CliTest)
  add_test(NAME system.${suite}
           COMMAND python3 ${SHED_TEST_DIR}/system/test_system.py ${suite})
  set_tests_properties(system.${suite} PROPERTIES
                       ENVIRONMENT "${system_test_env}" SKIP_RETURN_CODE 77 TIMEOUT 600)
endforeach()
add_test(NAME system.XfsReflinkTest
         COMMAND python3 ${SHED_TEST_DIR}/system/test_system_xfs.py)
set_tests_properties(system.XfsReflinkTest PROPERTIES
                     ENVIRONMENT "${system_test_env}" SKIP_RETURN_CODE 77 TIMEOUT 900 RUN_SERIAL TRUE)

# End to end with the real container backend (runc), driven by the container tests' driver.
if(TARGET backend_driver)
  get_filename_component(SHED_SYSTEM_CACHE ${CMAKE_BINARY_DIR}/../build-cache ABSOLUTE)
  add_test(NAME system.ContainerPruneTest
           COMMAND python3 ${SHED_TEST_DIR}/system/test_system_container.py)
  set_tests_properties(system.ContainerPruneTest PROPERTIES
    ENVIRONMENT "SHED_SERVER=$<TARGET_FILE:shed-server>;SHED_BACKEND_DRIVER=$<TARGET_FILE:backend_driver>;SHED_FIXTURES=${SHED_FIXTURES};SHED_BUILD_CACHE=${SHED_SYSTEM_CACHE};PYTHONPATH=${SHED_FIXTURES};PYTHONDONTWRITEBYTECODE=1"
    SKIP_RETURN_CODE 77 RUN_SERIAL TRUE TIMEOUT 1200)
endif()
