"""The include-direction rule, over every C file of the tree (a ctest entry:
structure.include_direction).

Modules, lowest first: common -> config -> oci -> imaged -> runtime -> {server, ssh} -> cmd.
A file may include headers of its own module and of modules below it, never above; server
(the HTTP API) and ssh (the SSH front door) are siblings on one level and never include each
other. Exceptions:
cmd/shed (the REST client) may use only common and cmd/common, and cmd/common (shared by the
client) only common; a program under cmd/ never includes another program's headers. Tests
under tests/<module>/ may include <module>, what is below it, and the harness
(tests/harness/).

Another module's header is included as "<module>/<header>" and must be one of its doors (the
HEADERS of its shed_module in <module>/CMakeLists.txt); a module's private header is included
by bare file name, from its own directory only. No include path contains "..".

The build enforces the same boundaries through per-target include directories (see the root
CMakeLists.txt); this check names the rule and the line instead of a missing-file error, and
also catches what the include path alone would let through ("../" paths, a header beside
the including file).

Usage: check_includes.py SOURCE_DIR [--as MODULE FILE...]
  --as: check FILE... as if they were sources of MODULE (e.g. runtime), for probes.
"""

import fnmatch
import os
import re
import subprocess
import sys

# Levels, lowest first; the modules of one level are siblings.
LEVELS = [["common"], ["config"], ["oci"], ["imaged"], ["runtime"], ["server", "ssh"], ["cmd"]]
ORDER = [module for level in LEVELS for module in level]
ORDER_TEXT = " -> ".join(level[0] if len(level) == 1 else "{%s}" % ", ".join(level)
                         for level in LEVELS)
# Modules whose allowed set is not "everything below": module -> what it may include.
RESTRICTED = {
    "cmd/shed": {"common", "cmd/common"},
    "cmd/common": {"common"},
}
HARNESS = "harness"  # tests/harness/check.h, included as "harness/check.h"
# Probes that break the rules on purpose (tests/structure/tests.cmake builds them).
EXCLUDED_DIRS = ("tests/structure/probes/",)

INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]*)"')
SHED_MODULE = re.compile(r"shed_module\(\s*\S+\s+HEADERS\s+(.*?)\s+DEPENDS\b", re.S)


def rank(module):
    """The level of a module (siblings share it)."""
    top = module.split("/")[0]
    return next(i for i, level in enumerate(LEVELS) if top in level)


def below(module):
    """The modules on the levels under module's."""
    return {m for level in LEVELS[:rank(module)] for m in level}


def module_of(path):
    """The module a source file belongs to, and whether it is a test of it (None, False
    when it is in no module)."""
    parts = path.split("/")
    test = parts[0] == "tests"
    if test:
        parts = parts[1:]
        if parts and parts[0] == HARNESS:
            return HARNESS, True
    if len(parts) >= 3 and parts[0] == "cmd":
        return "cmd/" + parts[1], test
    if len(parts) >= 2 and parts[0] in ORDER[:-1]:
        return parts[0], test
    return None, test


def allowed(module, test):
    """The modules a file of module (or a test of it) may include."""
    if module == HARNESS:
        return {HARNESS}
    if module in RESTRICTED:
        found = set(RESTRICTED[module])
    elif module.startswith("cmd/"):
        found = set(ORDER[:-1]) | {"cmd/common"}
    else:
        found = below(module)
    found.add(module)
    if test:
        found.add(HARNESS)
    return found


def public_headers(source_dir, module):
    """The doors of module (its shed_module HEADERS), or an empty set."""
    try:
        with open(os.path.join(source_dir, module, "CMakeLists.txt")) as f:
            text = f.read()
    except OSError:
        return set()
    match = SHED_MODULE.search(text)
    return set(match.group(1).split()) if match else set()


def included_module(name):
    """(module, header) an include "module/header" names, or (None, None)."""
    parts = name.split("/")
    if parts[0] == "cmd" and len(parts) == 3:
        return "cmd/" + parts[1], parts[2]
    if parts[0] == HARNESS and len(parts) == 2:
        return HARNESS, parts[1]
    if parts[0] in ORDER[:-1] and len(parts) == 2:
        return parts[0], parts[1]
    return None, None


def check_include(source_dir, path, module, test, name, doors):
    """The rule an include breaks, or None."""
    if ".." in name.split("/"):
        return '".." in an include path: include another module\'s header as "<module>/<header>"'
    if "/" not in name:
        if os.path.exists(os.path.join(source_dir, os.path.dirname(path), name)):
            return None
        return ('no %s beside %s: another module\'s header is included as "<module>/<header>"'
                % (name, path))
    target, header = included_module(name)
    if target is None:
        return ('"%s" names no module: include another module\'s header as '
                '"<module>/<header>"' % name)
    if target not in allowed(module, test):
        who = "tests of %s" % module if test else module
        if target == HARNESS:
            why = "only tests include the test harness"
        elif module in RESTRICTED:
            why = "%s may include only %s" % (who, ", ".join(sorted(RESTRICTED[module])))
        elif target.startswith("cmd/") or module.startswith("cmd/"):
            why = "%s may not include the headers of %s" % (who, target)
        elif rank(target) == rank(module):
            why = "%s and %s are siblings (one level of %s): neither includes the other" % (
                target, module, ORDER_TEXT)
        else:
            why = "%s is above %s in the order %s" % (target, who, ORDER_TEXT)
        return why
    if target != HARNESS and header not in doors(target):
        return ("%s is not a public header of %s (HEADERS in %s/CMakeLists.txt); a module's "
                "private header is included by file name from its own directory"
                % (header, target, target))
    return None


def check_file(source_dir, path, module, test, doors):
    """[(line number, include, rule broken)] of one file."""
    found = []
    with open(os.path.join(source_dir, path), errors="replace") as f:
        for number, line in enumerate(f, 1):
            match = INCLUDE.match(line)
            if match is None:
                continue
            rule = check_include(source_dir, path, module, test, match.group(1), doors)
            if rule is not None:
                found.append((number, match.group(1), rule))
    return found


def source_files(source_dir, patterns=("*.c", "*.h")):
    """Every tracked file matching patterns (git ls-files), or every one below source_dir
    outside build directories when it is not a git work tree."""
    try:
        listing = subprocess.run(["git", "-C", source_dir, "ls-files", "-z", "--"]
                                 + list(patterns), capture_output=True, check=True)
        return sorted(p for p in listing.stdout.decode().split("\0") if p)
    except (OSError, subprocess.CalledProcessError):
        pass
    found = []
    for root, dirs, files in os.walk(source_dir):
        dirs[:] = [d for d in dirs if not d.startswith(("build", "."))]
        for name in files:
            if any(fnmatch.fnmatch(name, pattern) for pattern in patterns):
                found.append(os.path.relpath(os.path.join(root, name), source_dir))
    return sorted(found)


def door_lookup(source_dir):
    cache = {}

    def doors(module):
        if module not in cache:
            cache[module] = public_headers(source_dir, module)
        return cache[module]
    return doors


def check_tree(source_dir, files=None, as_module=None):
    """[(path, line, include, rule)] over files (default: the whole tree), and the number of
    files checked."""
    doors = door_lookup(source_dir)
    violations, checked = [], 0
    for path in (files if files is not None else source_files(source_dir)):
        if as_module is not None:
            module, test = as_module, False
        else:
            if path.startswith(EXCLUDED_DIRS):
                continue
            module, test = module_of(path)
            if module is None:
                violations.append((path, 0, "", "in no module: C sources live under a module "
                                   "directory (%s) or tests/" % ", ".join(ORDER)))
                continue
        checked += 1
        for number, name, rule in check_file(source_dir, path, module, test, doors):
            violations.append((path, number, name, rule))
    return violations, checked


def main(argv):
    if len(argv) < 2 or (len(argv) > 2 and (argv[2] != "--as" or len(argv) < 5)):
        print(__doc__, file=sys.stderr)
        return 2
    source_dir = os.path.abspath(argv[1])
    if len(argv) > 2:
        files = [os.path.relpath(os.path.abspath(p), source_dir) for p in argv[4:]]
        violations, checked = check_tree(source_dir, files, as_module=argv[3])
    else:
        violations, checked = check_tree(source_dir)
    for path, number, name, rule in violations:
        print('%s:%d: #include "%s": %s' % (path, number, name, rule))
    if checked == 0:
        print("no C files found under %s" % source_dir)
        return 1
    if violations:
        print("%d include(s) break the module rules (tests/structure/check_includes.py)"
              % len(violations))
        return 1
    print("%d files: every include goes to the file's own module or down the order %s"
          % (checked, ORDER_TEXT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
