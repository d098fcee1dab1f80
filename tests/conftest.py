"""Shared fixtures: a real redis-server per session (the embedded one), the shared data, FERVI processes."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

import pytest
import redis

from fervi.embedded import EmbeddedRedis
from fervi.service import spawn, stop_processes

REPO = Path(__file__).resolve().parent.parent
# The FER-2013 and CK+ data live beside the clone (`../shared`, or $FERVI_SHARED), never in the repository.
# Without them the tests that need them are skipped with the reason; with FERVI_SHARED set (CI) they must
# be there.
SHARED = Path(os.environ.get("FERVI_SHARED", REPO.parent / "shared"))
FER_CSV = SHARED / "data" / "fer2013" / "fer2013.csv.gz"
CKPLUS = SHARED / "data" / "ckplus48"
VIDEOS = SHARED / "data" / "videos"


def _data(path: Path, what: str) -> Path:
    if path.exists():
        return path
    if "FERVI_SHARED" in os.environ:
        pytest.fail(f"FERVI_SHARED={os.environ['FERVI_SHARED']} lacks {what}: {path}")
    pytest.skip(f"{what} is not beside this clone ({path}); set FERVI_SHARED to run this test")


def _data_line() -> str:
    if FER_CSV.exists() and CKPLUS.exists():
        return f"data: FER-2013 and CK+ from {SHARED}"
    return f"data: {SHARED} not found: the tests that need FER-2013 or CK+ were skipped (set FERVI_SHARED to run them)"


def pytest_report_header(config) -> str:
    return _data_line()


def pytest_terminal_summary(terminalreporter) -> None:
    terminalreporter.write_line(_data_line())  # also under -q, which hides the header


@pytest.fixture(scope="session")
def fer_csv() -> Path:
    return _data(FER_CSV, "the FER-2013 CSV")


@pytest.fixture(scope="session")
def ckplus_dir() -> Path:
    return _data(CKPLUS, "the CK+48 folder")


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    return _data(VIDEOS, "the shared videos folder")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    # The dashboards built in this process (create_app) each left python-socketio's Redis listener behind: a
    # daemon thread with no way to stop it, which retries forever and, once this Redis is gone, logged
    # "Cannot receive from redis" tracebacks into pytest's closed streams at exit. Silenced before the server
    # goes; the threads end with the process (a real dashboard is its own process, ended by SIGTERM).
    for name in ("socketio", "socketio.server", "socketio.client"):
        logging.getLogger(name).disabled = True
    server.stop()


@pytest.fixture
def restartable_redis(tmp_path):
    """A redis-server of the test's own, which the test may stop and start again (same port, same data)."""
    server = EmbeddedRedis(tmp_path / "redis-own").start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    return redis_server.url


@pytest.fixture
def client(redis_url) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def fervi_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "FERVI_REDIS_URL": redis_url, "FERVI_LOG_LEVEL": "INFO"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Processes:
    """FERVI subcommands started as real processes; all are stopped at the end of the test."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.started: list[subprocess.Popen] = []

    def start(self, args: list[str], env: dict[str, str], name: str) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.log", "wb") as log:
            process = spawn(args, env, stdout=log, stderr=subprocess.STDOUT, cwd=self.log_dir)
        process.log_path = self.log_dir / f"{name}.log"
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        stop_processes(self.started, 20)


@pytest.fixture
def processes(tmp_path):
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def http_ok(url: str) -> bool:
    """True when `url` answers 200 now."""
    import urllib.request

    try:
        return urllib.request.urlopen(url, timeout=2).status == 200
    except OSError:
        return False


def health_json(port: int) -> dict:
    """A FERVI process's /healthz body on `port` (the same JSON with its 503 while not ok; {} when none answers)."""
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return json.loads(err.read())
    except OSError:
        return {}
