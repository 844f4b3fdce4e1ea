# runtime/overlay: overlay sheds (issue 13) on this machine's ext4 root file system with a
# real server, real runc sheds and the Debian fixture image: twenty sheds of one image, the
# pin of a re-pulled tag's old content, kill -9 at every crash point of a create and a
# delete, export against a full copy, and df/prune against du and statvfs (on a private
# loop-mounted ext4). Needs root, runc, loop devices and the fixture image.
foreach(suite ManyShedsTest PinTest CrashTest ExportTest AccountingTest)
  shed_python_test(runtime.overlay.${suite} ${CMAKE_CURRENT_LIST_DIR}/test_overlay.py
                   ARGS ${suite} TIMEOUT 1500 SERIAL)
endforeach()
