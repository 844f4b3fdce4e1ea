# runtime/system: df / prune. The library through a C test (plan vs execute races, log
# truncation, FIEMAP fallback), the local commands, the REST API and the `shed` CLI on real
# on-disk states (images pulled from a loopback registry), reflink accounting on a
# loop-mounted XFS, and end to end with the real container backend.
add_executable(test_system_prune ${CMAKE_CURRENT_LIST_DIR}/test_prune.c)
target_link_libraries(test_system_prune PRIVATE shed_runtime)
shed_c_test(runtime.system.prune_library test_system_prune)

foreach(suite DiskUsageTest PruneTest ApiTest CliTest)
  shed_python_test(runtime.system.${suite} ${CMAKE_CURRENT_LIST_DIR}/test_system.py
                   ARGS ${suite})
endforeach()
shed_python_test(runtime.system.XfsReflinkTest ${CMAKE_CURRENT_LIST_DIR}/test_system_xfs.py
                 TIMEOUT 900 SERIAL)
shed_python_test(runtime.system.ContainerPruneTest
                 ${CMAKE_CURRENT_LIST_DIR}/test_system_container.py TIMEOUT 1200 SERIAL)
foreach(suite AgreementTest ReclaimTest)
  shed_python_test(runtime.system.sizes.${suite} ${CMAKE_CURRENT_LIST_DIR}/test_sizes.py
                   ARGS ${suite})
endforeach()
