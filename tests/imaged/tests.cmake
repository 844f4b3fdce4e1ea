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
# The layer reader and flattener (imaged_convert on tar/gzip/zstd bytes), under libFuzzer or
# over its corpus.
shed_fuzz_target(layer ${CMAKE_CURRENT_LIST_DIR}/fuzz_layer.c LIBS shed_imaged)

# shed-server import: skopeo's docker-archive, oci-archive and oci layouts and a rootfs tar
# of the same image, compared with the registry's conversion.
foreach(suite EveryKindTest HostileInputTest DebianImageTest)
  shed_python_test(imaged.import.${suite} ${CMAKE_CURRENT_LIST_DIR}/test_import.py
                   ARGS ${suite} TIMEOUT 900)
endforeach()
shed_python_test(imaged.import.ImportedShedTest ${CMAKE_CURRENT_LIST_DIR}/test_import.py
                 ARGS ImportedShedTest TIMEOUT 900 SERIAL)

# ext4_write_from_dir (the writer behind `shed-server export`): a real tree, every entry kind.
shed_python_test(imaged.from_dir ${CMAKE_CURRENT_LIST_DIR}/test_from_dir.py TIMEOUT 300)
