# imaged: `shed-server convert` against fixture images on a loopback registry, compared with
# a reference extraction by the tree comparer (treecmp.py); the image cache through
# `shed-server pull-images` / `images`. Tests that need root (reference extraction, the
# nobody user, mounting) skip with status 77 otherwise.

# The names of images_dir (imaged/layout.h): a C unit test.
add_executable(test_imaged_layout ${CMAKE_CURRENT_LIST_DIR}/test_layout.c)
target_link_libraries(test_imaged_layout PRIVATE shed_imaged)
shed_c_test(imaged.layout test_imaged_layout)

# ext4_list: lists an ext4 image through libext2fs for the tree comparer.
add_executable(ext4_list ${CMAKE_CURRENT_LIST_DIR}/ext4_list.c)
target_link_libraries(ext4_list PRIVATE PkgConfig::EXT2FS PkgConfig::CRYPTO)

foreach(suite LayerSemanticsTest FilesystemTest BadInputTest RootlessTest DebianImageTest)
  shed_python_test(imaged.${suite} ${CMAKE_CURRENT_LIST_DIR}/test_convert.py ARGS ${suite}
                   TIMEOUT 900)
endforeach()

shed_python_test(imaged.cache ${CMAKE_CURRENT_LIST_DIR}/test_pull_images.py TIMEOUT 900)

# ext4_write_from_dir (the writer behind `shed-server export`): a real tree, every entry kind.
shed_python_test(imaged.from_dir ${CMAKE_CURRENT_LIST_DIR}/test_from_dir.py TIMEOUT 300)
