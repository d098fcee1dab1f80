"""The package's boundaries, read from the imports of every module (docs/architecture.md):

- the kernel (`fervi/` without `fervi/app/`) imports no stage and not the application layer;
- a stage imports the kernel and, of another stage, only its package (`fervi.offline`), never its modules;
- only the bus talks to Redis: no other module imports `redis` (the embedded server's launcher aside), and
  RQ, which is Redis too, is imported by one module of the bus, `fervi.bus.queue` (RQ runs plain functions
  as jobs: no job needs RQ in its signature);
- nothing imports the folders by their top-level names (`workers`, `models`, ...), the tests included:
  installed, FERVI is the single top-level package `fervi`;
- no module imports a module that imports it back, nor another module's private names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fervi

from .conftest import REPO

APP = "app"
HARNESS = "bench"  # benchmarks drive whole stages, as the application layer does
REDIS_MODULES = ("fervi.bus", "fervi.embedded")  # the bus package, and the launcher of the embedded server
RQ_MODULE = "fervi.bus.queue"  # the video queue: its jobs, registries, stop command and workers


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


def _test_modules() -> dict[str, Path]:
    """The test modules, by their dotted names (`tests.test_x`)."""
    return {f"tests.{path.stem}": path for path in sorted((REPO / "tests").glob("*.py")) if path.stem != "__init__"}


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


def _top_level_stage_imports(name: str, targets) -> list[str]:
    return [
        f"{name} imports {target}: the top-level name; use fervi.{target}"
        for target in sorted(targets)
        if target.split(".")[0] in fervi.STAGES
    ]


def _violations(modules: dict[str, Path]) -> list[str]:
    known = set(modules)
    bad = []
    for name, path in modules.items():
        part = _part(name)
        targets = sorted(_imports(name, path))
        bad += _top_level_stage_imports(name, targets)
        for target in targets:
            top = target.split(".")[0]
            if top == "tests":
                bad.append(f"{name} imports {target}: the product imports no test")
            if top == "redis" and not any(name == m or name.startswith(m + ".") for m in REDIS_MODULES):
                bad.append(f"{name} imports {target}: only the bus talks to Redis")
            if top == "rq" and name != RQ_MODULE:
                bad.append(f"{name} imports {target}: only {RQ_MODULE} talks to RQ")
            if top != "fervi" or target not in known:
                continue
            other = _part(target)
            if part == "kernel" and other != "kernel":
                bad.append(f"{name} imports {target}: the kernel imports no stage")
            elif part not in ("kernel", APP, HARNESS) and other not in ("kernel", part):
                if other == APP or target != f"fervi.{other}":
                    bad.append(f"{name} imports {target}: a stage uses another stage's package, not its modules")
    return bad


def _private_names(name: str, path: Path) -> list[str]:
    """`from .x import _y`: a private name of another module (it says: not meant to be used from outside)."""
    return [
        f"{name} imports {'.' * node.level}{f'{node.module}.' if node.module else ''}{alias.name}: a private "
        "name of another module"
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]


def _cycles(modules: dict[str, Path]) -> list[str]:
    """Imports that close a cycle among `modules` (a module's own package does not count: it runs first)."""
    graph = {
        name: sorted(t for t in _imports(name, path) if t in modules and t != name and not name.startswith(t + "."))
        for name, path in modules.items()
    }
    state: dict[str, str] = {}
    found = []

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in graph[name]:
            if state.get(target) == "open":
                found.append(" -> ".join([*trail[trail.index(target) :], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return found


def test_the_kernel_imports_no_stage_and_stages_import_no_other_stages_internals():
    modules = _modules()
    assert {"fervi.bus", "fervi.app.cli", "fervi.offline.jobs", "fervi.tracker.service"} <= set(modules)
    assert _violations(modules) == []


def test_no_module_imports_another_back_nor_another_modules_private_names():
    """Before: vision/detector.py imported multiscale.py for its factory and multiscale.py reached back into
    detector.py for seven names, `_model_file` among them; training/votes.py and datasets.py imported each
    other (the shared reader pieces are in training/files.py now). The kernel and every stage."""
    modules = _modules()
    assert {"fervi.vision.multiscale", "fervi.training.votes"} <= set(modules)
    assert _cycles(modules) == []
    assert [bad for name, path in modules.items() for bad in _private_names(name, path)] == []


def test_tests_import_the_stages_through_fervi():
    """A test that imports `training.x` runs against a second copy of the module, and fails installed."""
    modules = _test_modules()
    assert "tests.test_boundaries" in modules
    bad = [found for name, path in modules.items() for found in _top_level_stage_imports(name, _imports(name, path))]
    assert bad == []


def test_the_check_catches_what_it_forbids(tmp_path):
    """The rules above fire on each kind of arrow they forbid (so a passing run means something)."""
    cases = {
        "fervi.protocol": "from fervi.offline.jobs import submit\n",
        "fervi.dashboard.videos": "from fervi.offline.jobs import submit\nimport redis\n",
        "fervi.workers.core": "from ..tracker import service\n",
        "fervi.ingest.sources": "import workers.worker\n",
        "fervi.offline.runner": "from rq.registry import StartedJobRegistry\n",
        "fervi.bus.videos": "import rq\n",
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
    assert "fervi.offline.runner imports rq.registry: only fervi.bus.queue talks to RQ" in found
    assert "fervi.bus.videos imports rq: only fervi.bus.queue talks to RQ" in found
    cycle = {
        "fervi.vision.detector": "from .multiscale import MultiScaleDetector\n",
        "fervi.vision.multiscale": "from .detector import _model_file, clip_boxes\n",
    }
    for name, source in cycle.items():
        (tmp_path / f"{name}.py").write_text(source)
    cycle_modules = {name: tmp_path / f"{name}.py" for name in cycle}
    assert _cycles(cycle_modules) == ["fervi.vision.detector -> fervi.vision.multiscale -> fervi.vision.detector"]
    assert _private_names("fervi.vision.multiscale", cycle_modules["fervi.vision.multiscale"]) == [
        "fervi.vision.multiscale imports .detector._model_file: a private name of another module"
    ]
    test = tmp_path / "test_x.py"
    test.write_text("from .conftest import wait_for\nfrom training.agreement import js_divergence\n")
    assert _top_level_stage_imports("tests.test_x", _imports("tests.test_x", test)) == [
        "tests.test_x imports training.agreement: the top-level name; use fervi.training.agreement",
        "tests.test_x imports training.agreement.js_divergence: the top-level name; "
        "use fervi.training.agreement.js_divergence",
    ]


def test_metrics_are_defined_in_one_module():
    """Every Prometheus metric of a process is defined in fervi/metrics.py (a reader finds every name there)."""
    kinds = {
        "prometheus_client.Counter",
        "prometheus_client.Gauge",
        "prometheus_client.Histogram",
        "prometheus_client.Summary",
    }
    defining = sorted(name for name, path in _modules().items() if _imports(name, path) & kinds)
    assert defining == ["fervi.metrics"]


LONGEST_FUNCTION = 79  # lines from `def` to its end, docstring included: a longer one is split (issue 29)


def _long_functions(paths) -> list[str]:
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > LONGEST_FUNCTION:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {lines} lines")
    return found


def test_no_function_is_longer_than_the_limit():
    paths = [*_modules().values(), *_test_modules().values()]
    assert len(paths) > 100 and _long_functions(paths) == []
