# imaged: `shed-server convert` against fixture images on a loopback registry, compared with
# a reference extraction by the tree comparer (tests/imaged/treecmp.py). Tests that need
# root (reference extraction, the nobody user, mounting) skip with status 77 otherwise.

# ext4_list: lists an ext4 image through libext2fs for the tree comparer.
add_executable(ext4_list ${SHED_TEST_DIR}/imaged/ext4_list.c)
target_link_libraries(ext4_list PRIVATE PkgConfig::EXT2FS PkgConfig::CRYPTO)

# The Debian image is cached beside the build dirs so Release and Asan builds share it.
get_filename_component(SHED_BUILD_CACHE ${CMAKE_BINARY_DIR}/../build-cache ABSOLUTE)

set(imaged_test_env
    SHED_SERVER=$<TARGET_FILE:shed-server>
    SHED_EXT4_LIST=$<TARGET_FILE:ext4_list>
    SHED_FIXTURES=${SHED_FIXTURES}
    SHED_BUILD_CACHE=${SHED_BUILD_CACHE}
    PYTHONDONTWRITEBYTECODE=1)

foreach(suite LayerSemanticsTest FilesystemTest BadInputTest RootlessTest DebianImageTest)
  add_test(NAME imaged.${suite}
           COMMAND python3 ${SHED_TEST_DIR}/imaged/test_convert.py ${suite})
  set_tests_properties(imaged.${suite} PROPERTIES
                       ENVIRONMENT "${imaged_test_env}"
                       SKIP_RETURN_CODE 77
                       TIMEOUT 900)
endforeach()
