"""The package's boundaries, read from the imports of every module (docs/architecture.md):

- the kernel (`fervi/` without `fervi/app/`) imports no stage and not the application layer;
- a stage imports the kernel and, of another stage, only its package (`fervi.offline`), never its modules;
- only the bus talks to Redis: no other module imports `redis` (the embedded server's launcher aside);
- nothing imports the folders by their top-level names (`workers`, `models`, ...): installed, FERVI is
  the single top-level package `fervi`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fervi

from .conftest import REPO

APP = "app"
HARNESS = "bench"  # benchmarks drive whole stages, as the application layer does
REDIS_MODULES = ("fervi.bus", "fervi.embedded")  # the bus package, and the launcher of the embedded server


def _modules() -> dict[str, Path]:
    """Every module of the installed namespace, by its dotted name, from the folders pyproject maps."""
    found = {}
    for folder, package in [("fervi", "fervi"), *((stage, f"fervi.{stage}") for stage in fervi.STAGES)]:
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def _imports(name: str, path: Path) -> set[str]:
    """Absolute names a module imports (relative imports resolved), in functions too."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)  # `from fervi import aggregates`
    return out


def _part(name: str) -> str:
    """'kernel', 'app' or the stage a module belongs to."""
    parts = name.split(".")
    if parts[0] != "fervi" or len(parts) == 1 or parts[1] not in (*fervi.STAGES, APP, "__main__"):
        return "kernel"
    return APP if parts[1] == "__main__" else parts[1]


def _violations(modules: dict[str, Path]) -> list[str]:
    known = set(modules)
    bad = []
    for name, path in modules.items():
        part = _part(name)
        for target in sorted(_imports(name, path)):
            top = target.split(".")[0]
            if top in fervi.STAGES or top == "tests":
                bad.append(f"{name} imports {target}: the top-level name; use fervi.{target}")
            if top == "redis" and not any(name == m or name.startswith(m + ".") for m in REDIS_MODULES):
                bad.append(f"{name} imports {target}: only the bus talks to Redis")
            if top != "fervi" or target not in known:
                continue
            other = _part(target)
            if part == "kernel" and other != "kernel":
                bad.append(f"{name} imports {target}: the kernel imports no stage")
            elif part not in ("kernel", APP, HARNESS) and other not in ("kernel", part):
                if other == APP or target != f"fervi.{other}":
                    bad.append(f"{name} imports {target}: a stage uses another stage's package, not its modules")
    return bad


def test_the_kernel_imports_no_stage_and_stages_import_no_other_stages_internals():
    modules = _modules()
    assert {"fervi.bus", "fervi.app.cli", "fervi.offline.jobs", "fervi.tracker.service"} <= set(modules)
    assert _violations(modules) == []


def test_the_check_catches_what_it_forbids(tmp_path):
    """The rules above fire on each kind of arrow they forbid (so a passing run means something)."""
    cases = {
        "fervi.protocol": "from fervi.offline.jobs import submit\n",
        "fervi.dashboard.videos": "from fervi.offline.jobs import submit\nimport redis\n",
        "fervi.workers.core": "from ..tracker import service\n",
        "fervi.ingest.sources": "import workers.worker\n",
    }
    modules = {}
    for name, source in cases.items():
        path = tmp_path / f"{name}.py"
        path.write_text(source)
        modules[name] = path
    modules.update({"fervi.offline.jobs": tmp_path / "x.py", "fervi.tracker.service": tmp_path / "x.py"})
    (tmp_path / "x.py").write_text("")
    found = "\n".join(_violations(modules))
    assert "fervi.protocol imports fervi.offline.jobs: the kernel imports no stage" in found
    assert "fervi.dashboard.videos imports fervi.offline.jobs: a stage uses another stage's package" in found
    assert "fervi.dashboard.videos imports redis: only the bus talks to Redis" in found
    assert "fervi.workers.core imports fervi.tracker.service: a stage uses another stage's package" in found
    assert "fervi.ingest.sources imports workers.worker: the top-level name" in found


def test_metrics_are_defined_in_one_module():
    """Every Prometheus metric of a process is defined in fervi/metrics.py (a reader finds every name there)."""
    kinds = {"prometheus_client.Counter", "prometheus_client.Gauge", "prometheus_client.Histogram",
             "prometheus_client.Summary"}
    defining = sorted(name for name, path in _modules().items() if _imports(name, path) & kinds)
    assert defining == ["fervi.metrics"]
