# runtime/repo: the repo URL policy (which URLs a create may clone).
add_executable(test_repo ${CMAKE_CURRENT_LIST_DIR}/test_repo.c)
target_link_libraries(test_repo PRIVATE shed_runtime)
shed_c_test(runtime.repo test_repo)
