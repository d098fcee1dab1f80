"""`pip install .` installs one top-level package, `fervi`, with every module and data file, and the
installed layout imports and runs without the source checkout (built here as a wheel, without network)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import fervi

from .conftest import REPO
from .test_boundaries import _modules


def _wheel(tmp_path) -> zipfile.ZipFile:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for folder in ("fervi", *fervi.STAGES):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "results"))
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("fervi-*.whl")
    return zipfile.ZipFile(wheel)


def test_the_wheel_holds_only_the_fervi_namespace_and_runs_without_the_checkout(tmp_path):
    wheel = _wheel(tmp_path)
    names = wheel.namelist()
    assert {name.split("/")[0] for name in names} == {"fervi", f"fervi-{fervi.__version__}.dist-info"}
    for module, path in _modules().items():  # every module of the source tree is installed
        expected = module.replace(".", "/") + ("/__init__.py" if path.name == "__init__.py" else ".py")
        assert expected in names, expected
    for data in ("fervi/models/fervi_cnn_lstm.tflite", "fervi/models/fervi_cnn_lstm.keras"):
        assert data in names, data
    for folder in ("templates", "static"):  # every page, script, style and icon the dashboard serves
        for path in (REPO / "dashboard" / folder).rglob("*"):
            if path.is_file():
                assert f"fervi/dashboard/{path.relative_to(REPO / 'dashboard').as_posix()}" in names, path
    site = tmp_path / "site"
    wheel.extractall(site)
    # run from elsewhere, the unpacked wheel first on the path: the installed layout, not this checkout
    probe = (
        "import fervi, fervi.app.cli, fervi.dashboard.app, fervi.offline, fervi.tracker.service, "
        f"fervi.settings as s; assert fervi.__file__.startswith({str(site)!r}), fervi.__file__; "
        f"assert s.default_model_dir().startswith({str(site)!r}); print(len(fervi.__path__))"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "1"  # no source-checkout mapping in an installed fervi
    cli = subprocess.run(
        [sys.executable, "-m", "fervi", "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert cli.returncode == 0 and fervi.__version__ in cli.stdout, cli.stderr[-2000:]
