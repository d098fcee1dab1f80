"""Shared fixtures: a real redis-server per session (the embedded one), the shared data, FERVI processes."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from fervi.embedded import EmbeddedRedis
from fervi.service import spawn, stop_processes

REPO = Path(__file__).resolve().parent.parent
# The full FER-2013 and CK+ beside the clone (`../shared`, or $FERVI_SHARED, which must then exist); without
# them the tests run on a committed FER-2013 sample (tests/data/README.md).
SHARED = Path(os.environ.get("FERVI_SHARED", REPO.parent / "shared"))
FER_CSV = SHARED / "data" / "fer2013" / "fer2013.csv.gz"
CKPLUS = SHARED / "data" / "ckplus48"
FER_SAMPLE = REPO / "tests" / "data" / "fer2013-sample.csv.gz"
CK_FOLDERS = {"anger": 0, "contempt": 6, "disgust": 1, "fear": 2, "happy": 3, "sadness": 4, "surprise": 5}


def _full_data() -> bool:
    if "FERVI_SHARED" in os.environ and not (FER_CSV.exists() and CKPLUS.exists()):
        raise pytest.UsageError(f"FERVI_SHARED={os.environ['FERVI_SHARED']} lacks data/fer2013/fer2013.csv.gz "
                                "or data/ckplus48")
    return FER_CSV.exists() and CKPLUS.exists()


def _data_line() -> str:
    if _full_data():
        return f"data: full FER-2013 and CK+ from {SHARED}"
    return (f"data: {SHARED} not found, so the FER-2013 sample {FER_SAMPLE.relative_to(REPO)} and a CK+-layout "
            "folder built from it (set FERVI_SHARED for the full data)")


def pytest_report_header(config) -> str:
    return _data_line()


def pytest_terminal_summary(terminalreporter) -> None:
    terminalreporter.write_line(_data_line())  # also under -q, which hides the header


@pytest.fixture(scope="session")
def fer_csv() -> Path:
    return FER_CSV if _full_data() else FER_SAMPLE


@pytest.fixture(scope="session")
def ckplus_dir(tmp_path_factory) -> Path:
    """CK+48 in folder form; without the shared data, the same layout holding real FER-2013 faces of the
    sample: PublicTest rows after the first 200 (which the tests use as FER-2013's own validation faces)
    that equal no Training face, as CK+ shares no face with FER-2013. 12 subjects, up to 48 frames per
    emotion folder; `contempt` from neutral faces."""
    if _full_data():
        return CKPLUS
    import cv2

    from fervi.training.datasets import load_fer_csv
    from fervi.training.splits import image_hashes

    faces = load_fer_csv(FER_SAMPLE)
    training = set(image_hashes(faces.images[faces.usage == "Training"]))
    spare = [i for i, h in zip(np.flatnonzero(faces.usage == "PublicTest")[200:],
                                image_hashes(faces.images[faces.usage == "PublicTest"][200:])) if h not in training]
    root = tmp_path_factory.mktemp("ck") / "ckplus48"
    for folder, label in CK_FOLDERS.items():
        (root / folder).mkdir(parents=True)
        picked = [i for i in spare if faces.labels[i] == label][:48]
        for n, i in enumerate(picked):
            subject, sequence, frame = n % 12 + 1, label * 2 + n // 24 + 1, n // 12 % 2 + 1
            cv2.imwrite(str(root / folder / f"S{subject:03d}_{sequence:03d}_{frame:08d}.png"), faces.images[i])
    return root


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
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
