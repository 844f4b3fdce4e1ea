"""Every test skips through one of the two harnesses, so SHED_TEST_STRICT (which turns skips
into failures on CI) reaches every skip: Python tests through tests/fixtures/testrun.py
(testrun.main / run / skip_all), C tests through tests/harness/check.h (CHECK_SKIP). Fails on
a test file that exits 77 itself or runs unittest without testrun, with file:line.

Usage: check_skips.py SOURCE_DIR
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_includes  # noqa: E402  (source_files)

HARNESSES = {"tests/fixtures/testrun.py", "tests/harness/check.h"}
# Not tests: file -> why it may exit 77.
NOT_TESTS = {
    "tests/fixtures/debian_image.py": "cli_main builds the image for the bench scripts",
}
PYTHON_RULES = [
    (re.compile(r"\b(?:sys\.)?exit\(\s*77\s*\)|\breturn\s+77\b|=\s*77\s*$"),
     "exits 77 itself: use testrun.skip_all(reason)"),
    (re.compile(r"\bunittest\.main\("), "unittest.main: use testrun.main()"),
    (re.compile(r"\bTextTestRunner\("), "its own TextTestRunner: use testrun.run(suite)"),
]
C_RULES = [
    (re.compile(r"\b_?exit\(\s*77\s*\)|\breturn\s+77\b|\b77\b.*skip|skip.*\b77\b", re.I),
     "exits 77 itself: use CHECK_SKIP(reason) (tests/harness/check.h)"),
]


def test_files(source_dir):
    tracked = check_includes.source_files(source_dir, ("*.py", "*.c", "*.h"))
    return [p for p in tracked
            if p.startswith("tests/") and p not in HARNESSES and p not in NOT_TESTS]


def violations(source_dir, files):
    found = []
    for path in files:
        rules = PYTHON_RULES if path.endswith(".py") else C_RULES
        with open(os.path.join(source_dir, path), errors="replace") as f:
            for number, line in enumerate(f, 1):
                code = line.split("#", 1)[0] if path.endswith(".py") else line
                for pattern, rule in rules:
                    if pattern.search(code):
                        found.append((path, number, rule))
    return found


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    source_dir = os.path.abspath(argv[1])
    files = test_files(source_dir)
    found = violations(source_dir, files)
    for path, number, rule in found:
        print("%s:%d: %s" % (path, number, rule))
    if not files:
        print("FAIL: no test files found under %s/tests" % source_dir)
        return 1
    if found:
        return 1
    print("%d test files: every skip goes through testrun.py or check.h" % len(files))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
