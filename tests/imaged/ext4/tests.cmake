# imaged/ext4: the ext4 writer (imaged/ext4_writer.h): one ctest entry per behaviour. Each builds images
# through the API and checks them with the real e2fsck/debugfs/dumpe2fs and libext2fs.
# The mount test needs root and loop devices and exits 77 (skipped) without them.
add_executable(test_ext4_writer ${CMAKE_CURRENT_LIST_DIR}/test_ext4_writer.c)
target_link_libraries(test_ext4_writer PRIVATE shed_imaged shed_common PkgConfig::EXT2FS)

set(ext4_writer_tests
    test_empty_image_has_ext4_features_and_passes_fsck
    test_each_image_gets_fresh_uuid_and_hash_seed
    test_create_refuses_an_existing_file
    test_inode_count_option_is_honoured
    test_root_times_come_from_mkdir_of_root
    test_root_times_default_to_newest_entry
    test_regular_file_contents_round_trip
    test_sparse_file_allocates_only_data_blocks
    test_5gib_sparse_file_is_fast_and_tiny
    test_fragmented_file_gets_an_extent_tree
    test_modes_and_32bit_owners_are_preserved
    test_timestamps_before_1970_and_after_2038_round_trip
    test_fast_and_slow_symlinks
    test_device_nodes_and_fifos
    test_extended_attributes_round_trip
    test_hardlinks_share_one_inode
    test_hardlink_survives_removal_of_first_name
    test_removing_last_name_frees_inode_and_blocks
    test_255_byte_names_and_4000_byte_paths
    test_large_directory_is_indexed
    test_huge_directory_gets_two_level_htree
    test_directory_just_over_one_block_is_indexed
    test_missing_parents_are_created_with_entry_mtime
    test_mkdir_over_directory_keeps_children_and_updates_attributes
    test_replacement_between_file_dir_and_symlink
    test_parent_symlinks_are_followed_inside_the_image
    test_whiteout_removes_only_lower_layer_entries
    test_opaque_directory_clears_lower_entries
    test_out_of_space_is_reported
    test_out_of_inodes_is_reported
    test_kernel_mounts_image_read_write)

foreach(test ${ext4_writer_tests})
  shed_c_test(imaged.ext4.${test} test_ext4_writer ARGS ${test})
endforeach()

# Driver for scripts/bench/ext4_write.sh (a benchmark, not a test).
add_executable(bench_ext4_tree ${CMAKE_CURRENT_LIST_DIR}/bench_ext4_tree.c)
target_link_libraries(bench_ext4_tree PRIVATE shed_imaged shed_common)
