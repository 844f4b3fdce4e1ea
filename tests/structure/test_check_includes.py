"""The include-direction check (check_includes.py) on small trees made for each rule: it must
name every kind of forbidden include and let the allowed ones through, so that
structure.include_direction passing on the real tree means something."""

import os
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
sys.path.insert(0, HERE)
import check_includes  # noqa: E402
import testrun  # noqa: E402

MODULES = {  # module dir -> public headers (shed_module HEADERS)
    "common": ["shed_err.h"],
    "oci": ["oci.h"],
    "imaged": ["cache.h"],
    "runtime": ["instance.h"],
    "server": ["server.h"],
    "ssh": ["sshd.h"],
    "cmd/common": ["system_print.h"],
}


class IncludeRulesTest(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="shed-include-rules-")
        self.addCleanup(shutil.rmtree, self.root)
        for module, headers in MODULES.items():
            self.write(module + "/CMakeLists.txt",
                       "shed_module(shed_x HEADERS %s\n            DEPENDS shed_common)\n"
                       % " ".join(headers))
            for header in headers:
                self.write(module + "/" + header, "")
        self.write("imaged/cache_internal.h", "")
        self.write("oci/oci_private.h", "")

    def write(self, path, text):
        full = os.path.join(self.root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)

    def violations(self, path, *includes):
        """The rules broken by a file at path made of the given includes."""
        self.write(path, "".join('#include "%s"\n' % name for name in includes))
        found, checked = check_includes.check_tree(self.root, [path])
        self.assertEqual(checked, 1)
        return [(line, name, rule) for _, line, name, rule in found]

    def assertRefused(self, path, include, words):
        found = self.violations(path, include)
        self.assertEqual(len(found), 1, found)
        self.assertEqual(found[0][:2], (1, include))
        self.assertIn(words, found[0][2])

    def test_a_lower_module_cannot_include_a_higher_one(self):
        self.assertRefused("runtime/a.c", "server/server.h", "server is above runtime")
        self.assertRefused("oci/a.c", "imaged/cache.h", "imaged is above oci")
        self.assertRefused("common/a.c", "oci/oci.h", "oci is above common")

    def test_server_and_ssh_are_siblings(self):
        self.assertRefused("ssh/a.c", "server/server.h", "server and ssh are siblings")
        self.assertRefused("server/a.c", "ssh/sshd.h", "ssh and server are siblings")
        self.assertEqual(self.violations("ssh/a.c", "runtime/instance.h"), [])
        self.assertEqual(self.violations("cmd/shed-server/a.c", "ssh/sshd.h",
                                         "server/server.h"), [])
        self.assertRefused("runtime/a.c", "ssh/sshd.h", "ssh is above runtime")

    def test_private_headers_of_another_module_are_refused(self):
        self.assertRefused("runtime/a.c", "imaged/cache_internal.h",
                           "cache_internal.h is not a public header of imaged")
        self.assertRefused("runtime/a.c", "oci/oci_private.h",
                           "oci_private.h is not a public header of oci")

    def test_dotdot_is_refused_even_where_it_resolves(self):
        self.assertRefused("runtime/a.c", "../imaged/cache_internal.h", '".." in an include path')
        self.assertRefused("runtime/a.c", "../runtime/instance.h", '".." in an include path')

    def test_a_bare_name_must_be_beside_the_file(self):
        self.assertEqual(self.violations("imaged/a.c", "cache_internal.h"), [])
        self.assertRefused("runtime/a.c", "cache_internal.h", "no cache_internal.h beside")

    def test_the_client_uses_only_common_and_cmd_common(self):
        self.assertEqual(self.violations("cmd/shed/main.c", "common/shed_err.h",
                                         "cmd/common/system_print.h"), [])
        self.assertRefused("cmd/shed/main.c", "runtime/instance.h", "cmd/shed may include only")
        self.assertRefused("cmd/shed/main.c", "oci/oci.h", "cmd/shed may include only")
        self.assertRefused("cmd/common/a.c", "server/server.h", "cmd/common may include only")

    def test_programs_use_every_module_but_not_each_other(self):
        self.assertEqual(self.violations("cmd/shed-server/main.c", "server/server.h",
                                         "runtime/instance.h", "cmd/common/system_print.h"), [])
        self.assertRefused("cmd/shed-server/main.c", "cmd/shed/client.h",
                           "may not include the headers of cmd/shed")

    def test_allowed_doors_pass(self):
        self.assertEqual(self.violations("runtime/a.c", "imaged/cache.h", "oci/oci.h",
                                         "common/shed_err.h", "runtime/instance.h"), [])

    def test_tests_follow_their_module(self):
        self.assertEqual(self.violations("tests/runtime/clone/t.c", "runtime/instance.h",
                                         "imaged/cache.h", "harness/check.h"), [])
        self.assertRefused("tests/imaged/t.c", "runtime/instance.h", "runtime is above tests of")
        self.assertRefused("runtime/a.c", "harness/check.h", "only tests include the test harness")

    def test_a_c_file_outside_every_module_is_reported(self):
        self.write("scripts/tool.c", "")
        found, _ = check_includes.check_tree(self.root, ["scripts/tool.c"])
        self.assertEqual(len(found), 1)
        self.assertIn("in no module", found[0][3])

    def test_as_module_checks_a_probe_as_that_module(self):
        self.write("tests/structure/probes/p.c", '#include "server/server.h"\n')
        found, checked = check_includes.check_tree(self.root, ["tests/structure/probes/p.c"],
                                                   as_module="runtime")
        self.assertEqual(checked, 1)
        self.assertEqual(len(found), 1)
        self.assertIn("server is above runtime", found[0][3])


if __name__ == "__main__":
    sys.exit(testrun.main())
