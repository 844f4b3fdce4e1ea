# cmd: the two programs' command lines as a user meets them (issue 12). The conventions of
# shed (options anywhere, aliases, did you mean, -s HOST:PORT, one-line errors, --json,
# several names, help, client.yaml) against a real server; shed-server's (the same, plus
# where local commands looked, no stray library message); progress on a pseudo-terminal
# and without one; installing into a prefix and running a real shed from there, man pages,
# completion.
set(SHED_CMD_TEST_DIR ${CMAKE_CURRENT_LIST_DIR})
shed_python_test(cmd.shed_cli ${SHED_CMD_TEST_DIR}/test_cli.py)
shed_python_test(cmd.server_cli ${SHED_CMD_TEST_DIR}/test_server_cli.py)
shed_python_test(cmd.progress ${SHED_CMD_TEST_DIR}/test_progress.py TIMEOUT 900 SERIAL)
shed_python_test(cmd.install ${SHED_CMD_TEST_DIR}/test_install.py
                 ARGS --build-dir ${CMAKE_BINARY_DIR} --source-dir ${CMAKE_SOURCE_DIR}
                 TIMEOUT 900 SERIAL)
