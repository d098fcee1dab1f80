"""Type-checks the kernel and the stages as the modules they are installed as (fervi.<stage>).

mypy names a file's module by its folders, so `workers/worker.py` would be `workers.worker`, and it cannot
follow the import hook of an editable install. This script reads pyproject's package-dir and hands mypy each
stage file under its installed name; the options come from [tool.mypy] in pyproject.toml. Extra arguments
go to mypy.

The errors found when the gate was added (issue 29) are listed in .ci/mypy-baseline.txt (file, message, no line
number): they are the debt left to fix, and only an error beyond that list fails the check. `--write-baseline`
rewrites the list after fixes; it must only ever shrink. Exit code: 0 no new error, 1 new errors, 2 a blocking
error.
"""

import re
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

from mypy import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / ".ci" / "mypy-baseline.txt"


def stage_sources() -> list[BuildSource]:
    """Every .py file of each folder that pyproject's package-dir maps into `fervi`, under its module name."""
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    sources = []
    for package, folder in sorted(package_dir.items()):
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            module = ".".join((package, *parts[:-1], *(() if parts[-1] == "__init__" else (parts[-1],))))
            sources.append(BuildSource(str(path.relative_to(ROOT)), module, base_dir=str(ROOT)))
    return sources


def without_line(error: str) -> str:
    """`path:line: error: message` without its line number, so that edits above an error do not move it."""
    return re.sub(r"^([^:]+):\d+:", r"\1:", error)


def main(argv: list[str]) -> int:
    started = time.monotonic()
    write_baseline = "--write-baseline" in argv
    argv = [arg for arg in argv if arg != "--write-baseline"]
    sources, options = process_options(["--config-file", str(ROOT / "pyproject.toml"), *argv, "-p", "fervi"])
    sources += stage_sources()
    try:
        result = build.build(sources, options)
    except CompileError as blocking:
        print("\n".join(blocking.messages), file=sys.stderr)
        return 2
    errors = [line for line in result.errors if ": error:" in line]
    took = time.monotonic() - started
    if write_baseline:
        BASELINE.write_text("".join(f"{without_line(e)}\n" for e in sorted(errors, key=without_line)))
        print(f"{len(errors)} errors written to {BASELINE.relative_to(ROOT)}")
        return 0
    known = Counter(BASELINE.read_text().splitlines()) if BASELINE.is_file() else Counter()
    found = Counter(without_line(e) for e in errors)
    new = [e for e in errors if found[without_line(e)] > known[without_line(e)]]
    fixed = sum((known - found).values())
    summary = f"checked {len(sources)} source files in {took:.0f} s; {len(errors) - len(new)} known errors left to fix"
    if fixed:
        summary += f"; {fixed} fixed: run `python .ci/typecheck.py --write-baseline` to shrink the list"
    if new:
        print("\n".join(new))
        print(f"Found {len(new)} new errors ({summary})")
        return 1
    print(f"Success: no new errors ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
