"""`clang-format --dry-run -Werror` over every tracked .c and .h file (git ls-files; every
such file outside build directories when the source is not a git work tree), with the
repository's .clang-format. Fails with the list of files that are not formatted; fix them
with `clang-format -i FILE...`.

Usage: check_format.py SOURCE_DIR
"""

import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
import check_includes  # noqa: E402  (source_files: the same files as the include check)
import testrun  # noqa: E402

VIOLATION = re.compile(r"^(.*?):\d+:\d+: (?:error|warning): code should be clang-formatted",
                       re.M)


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    source_dir = os.path.abspath(argv[1])
    clang_format = shutil.which("clang-format")
    if clang_format is None:
        return testrun.skip_all("clang-format is not installed (scripts/deps.sh installs it)")
    version = subprocess.run([clang_format, "--version"], capture_output=True, text=True)
    files = check_includes.source_files(source_dir)
    if not files:
        print("FAIL: no .c or .h files found under %s" % source_dir)
        return 1
    result = subprocess.run([clang_format, "--dry-run", "-Werror"] + files, cwd=source_dir,
                            capture_output=True, text=True)
    unformatted = sorted(set(VIOLATION.findall(result.stderr)))
    if result.returncode != 0 and not unformatted:
        print(result.stderr)
        print("FAIL: clang-format exited %d" % result.returncode)
        return 1
    if unformatted:
        print("%d of %d files are not clang-format clean (%s):"
              % (len(unformatted), len(files), version.stdout.strip()))
        for path in unformatted:
            print("  " + path)
        print("fix: clang-format -i " + " ".join(unformatted))
        return 1
    print("%d files are clang-format clean (%s)" % (len(files), version.stdout.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
