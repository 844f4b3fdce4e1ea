# ssh: the SSH front door end to end, with the real OpenSSH client (ssh, scp, sftp, rsync,
# ssh-keyscan, ssh-agent) against a real shed-server and real container sheds (as root with
# runc, loop devices and the Debian fixture image).
foreach(suite SessionTest LimitsTest OpenTest ClientTest)
  shed_python_test(ssh.${suite} ${CMAKE_CURRENT_LIST_DIR}/test_ssh.py ARGS ${suite}
                   TIMEOUT 1200 SERIAL)
endforeach()
