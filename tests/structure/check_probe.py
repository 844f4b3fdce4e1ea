"""Builds one include probe (tests/structure/probes/, an EXCLUDE_FROM_ALL object library
compiled with a module's include path) and checks the outcome the boundary demands: the
probe compiles, or it fails because the compiler cannot find the forbidden header. A failure
for any other reason fails the test, so a broken probe cannot pass as "refused".

Usage: check_probe.py CMAKE BUILD_DIR TARGET (--compiles | --cannot-find HEADER)
"""

import re
import subprocess
import sys


def main(argv):
    if len(argv) not in (5, 6) or argv[4] not in ("--compiles", "--cannot-find") or \
            (argv[4] == "--cannot-find") != (len(argv) == 6):
        print(__doc__, file=sys.stderr)
        return 2
    cmake, build_dir, target = argv[1:4]
    build = subprocess.run([cmake, "--build", build_dir, "--target", target],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(build.stdout)
    if argv[4] == "--compiles":
        if build.returncode != 0:
            print("FAIL: %s does not compile, but it includes only doors it may use" % target)
            return 1
        print("ok: %s compiles" % target)
        return 0
    header = argv[5]
    # gcc: "fatal error: a/b.h: No such file or directory"; clang: "'a/b.h' file not found"
    missing = re.compile(r"%s'?: No such file or directory|'%s' file not found"
                         % (re.escape(header), re.escape(header)))
    if build.returncode == 0:
        print("FAIL: %s compiles: the include path lets it reach %s" % (target, header))
        return 1
    if not missing.search(build.stdout):
        print("FAIL: %s did not compile, but not because %s is out of reach" % (target, header))
        return 1
    print("ok: %s is refused: %s is not on its include path" % (target, header))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
