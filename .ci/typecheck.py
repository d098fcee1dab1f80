"""Type-checks the kernel and the stages as the modules they are installed as (fervi.<stage>).

mypy names a file's module by its folders, so `workers/worker.py` would be `workers.worker`, and it cannot
follow the import hook of an editable install. This script reads pyproject's package-dir and hands mypy each
stage file under its installed name; the options come from [tool.mypy] in pyproject.toml. Extra arguments
go to mypy. Exit code: 0 no error, 1 type errors, 2 a blocking error (mypy could not run).
"""

import sys
import time
import tomllib
from pathlib import Path

from mypy import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parent.parent


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


def main(argv: list[str]) -> int:
    started = time.monotonic()
    sources, options = process_options(["--config-file", str(ROOT / "pyproject.toml"), *argv, "-p", "fervi"])
    sources += stage_sources()
    try:
        result = build.build(sources, options)
    except CompileError as blocking:
        print("\n".join(blocking.messages), file=sys.stderr)
        return 2
    errors = [line for line in result.errors if ": error:" in line]
    summary = f"checked {len(sources)} source files in {time.monotonic() - started:.0f} s"
    if errors:
        print("\n".join(result.errors))
        print(f"Found {len(errors)} errors ({summary})")
        return 1
    print(f"Success: no issues found ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
