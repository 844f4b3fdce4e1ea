# runtime/hardening: the attacks of issue 10 against a real shed-server and real sheds (as
# root with runc, loop devices and the Debian fixture image), each now refused: local_dir
# escapes, an edited metadata.json, syscalls the seccomp filter refuses (run inside the shed
# as root through `shed-server exec`), the pids limit, the console log cap, kill -9 during a
# create at every crash point, user-namespace mode, and the modes of every file the server
# makes.

# syscall_probe: static, copied into a shed to make the raw syscalls.
add_executable(syscall_probe ${CMAKE_CURRENT_LIST_DIR}/syscall_probe.c)
target_compile_options(syscall_probe PRIVATE -fno-sanitize=all)
target_link_options(syscall_probe PRIVATE -static -fno-sanitize=all)

foreach(suite LocalDirTest MetadataTest SandboxTest ConsoleTest CrashTest UsernsTest ModesTest)
  shed_python_test(runtime.hardening.${suite} ${CMAKE_CURRENT_LIST_DIR}/test_hardening.py
                   ARGS ${suite} --probe $<TARGET_FILE:syscall_probe> TIMEOUT 1200 SERIAL)
endforeach()
