# imaged/ext4: the ext4 writer (imaged/ext4_writer.h): one ctest entry per behaviour,
# imaged.ext4.<test>, listed by the binary itself. Each builds images through the API and
# checks them with the real e2fsck/debugfs/dumpe2fs and libext2fs. The mount test needs root
# and loop devices and skips (77) without them.
add_executable(test_ext4_writer ${CMAKE_CURRENT_LIST_DIR}/test_ext4_writer.c)
target_link_libraries(test_ext4_writer PRIVATE shed_imaged shed_common PkgConfig::EXT2FS)
shed_c_test(imaged.ext4 test_ext4_writer)

# Driver for scripts/bench/ext4_write.sh (a benchmark, not a test).
add_executable(bench_ext4_tree ${CMAKE_CURRENT_LIST_DIR}/bench_ext4_tree.c)
target_link_libraries(bench_ext4_tree PRIVATE shed_imaged shed_common)

# Driver of ext4_write_from_dir for tests/imaged/test_from_dir.py (the tree an export writes).
add_executable(from_dir_tool ${CMAKE_CURRENT_LIST_DIR}/from_dir_tool.c)
target_link_libraries(from_dir_tool PRIVATE shed_imaged shed_common)
