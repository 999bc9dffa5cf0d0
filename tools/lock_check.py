"""Compare what a virtual environment holds with requirements.lock.

usage: python tools/lock_check.py LOCK VENV_PYTHON [--report]

Exits 1 and lists every difference (missing, extra, other version) unless --report is given,
which only lists them: `make test-latest` uses that to show what the next lock would change.
pip itself is not in the lock (the venv's own copy installs the locked uv), so it is left out.
"""

from __future__ import annotations

import re
import subprocess
import sys

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        m = PIN.match(line.strip())
        if m:
            found[_canonical(m.group(1))] = m.group(2)
    found.pop("pip", None)
    return found


def main(argv: list[str]) -> int:
    report_only = "--report" in argv
    lock_path, python = [a for a in argv if a != "--report"]
    with open(lock_path) as f:
        locked = pins(f)
    freeze = subprocess.run(
        [python, "-m", "pip", "freeze", "--all", "--exclude-editable"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    installed = pins(freeze)
    problems = []
    for name in sorted(locked.keys() | installed.keys()):
        want, have = locked.get(name), installed.get(name)
        if want != have:
            problems.append(f"{name}: lock {want or '(absent)'}, installed {have or '(absent)'}")
    for p in problems:
        print(p)
    if problems and not report_only:
        print(
            f"{len(problems)} difference(s) between {python}'s environment and {lock_path}: "
            "run `make clean test` to reinstall from the lock, or `make lock` to refresh it."
        )
        return 1
    if not problems:
        print(f"{len(installed)} packages, all as {lock_path} says")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
