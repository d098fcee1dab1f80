"""Hosts whose clocks are off (issue #27, defect 6). Before: an ingest host 2 s behind the workers had 600 of
600 live frames skipped as "too old" and no track, shown only by a counter; 1 h ahead wrote its statistics
1 h in the future. Now a live frame's age is measured by Redis's clock, an ingest more than a second off
stamps its frames in Redis's time, and the log, the Cameras page's data and `fervi status` say so."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import redis

from fervi.bus import Bus
from fervi.clock import ServerClock, clock_warning
from fervi.demo import write_video

from .conftest import fervi_env, wait_for

ROOT = Path(__file__).resolve().parent.parent


def skewed_ingest(processes, skew_s: float, video: Path, camera: str, env: dict) -> subprocess.Popen:
    args = ["-m", "tests.skewed_clock", str(skew_s), "ingest", str(video), "--camera", camera, "--live", "--loop"]
    with open(processes.log_dir / f"{camera}.log", "wb") as log:
        process = subprocess.Popen([sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    process.log_path = processes.log_dir / f"{camera}.log"
    processes.started.append(process)
    return process


def test_the_server_clock_offset_and_its_warning():
    clock = ServerClock(lambda: time.time() + 2.0)
    assert abs(clock.measure() - 2.0) < 0.05 and clock.skewed and abs(clock.correction_s() - 2.0) < 0.05
    assert ServerClock(lambda: time.time() + 0.2).correction_s() == 0.0  # within the tolerance: own stamps
    assert clock_warning({"clock_offset_s": "2.0"}).startswith("Its ingest host's clock is 2.0 s behind")
    assert "1.0 h ahead of" in clock_warning({"clock_offset_s": "-3600"})
    assert "1.0 h ahead of" in clock_warning({"clock_offset_s": "-3599.98"})  # measured a round trip short
    assert clock_warning({"clock_offset_s": "0.3"}) == "" and clock_warning({"clock_offset_s": "nan"}) == ""


def test_skewed_ingest_hosts_are_neither_discarded_nor_misplaced(tmp_path, redis_url, processes):
    video = write_video(tmp_path / "face.mp4", frames=40, fps=10)
    env = fervi_env(redis_url, FERVI_BLOCK_MS="200")
    processes.start(["worker"], env, "worker")
    processes.start(["tracker"], env, "tracker")
    behind = skewed_ingest(processes, -2.0, video, "behind", env)
    ahead = skewed_ingest(processes, 3600.0, video, "ahead", env)
    bus = Bus(redis.Redis.from_url(redis_url))

    def analysed(camera: str) -> list:
        return [r for _, r in bus.results(camera) if not r.gap]

    wait_for(lambda: len(analysed("behind")) >= 10, 90, "results of the camera whose host is 2 s behind")
    wait_for(lambda: len(analysed("ahead")) >= 10, 90, "results of the camera whose host is 1 h ahead")
    now = time.time()
    for camera in ("behind", "ahead"):  # placed in Redis's time: now, not 2 s ago or 1 h from now
        newest = analysed(camera)[-1].captured_at
        assert abs(newest - now) < 15, (camera, newest - now)
        wait_for(lambda c=camera: abs(bus.last_frame_at(c) - time.time()) < 15, 60, f"{camera}'s tracks now")
    states = bus.source_states(["behind", "ahead"])
    assert abs(float(states["behind"]["clock_offset_s"]) - 2.0) < 0.5
    assert abs(float(states["ahead"]["clock_offset_s"]) + 3600) < 0.5
    for camera in ("behind", "ahead"):  # its news and heartbeat in Redis's time: not "stalled", not "seen 1 h ago"
        assert abs(float(states[camera]["updated_at"]) - time.time()) < 15, camera
        seen = [p for n, p in bus.processes().items() if n.startswith(f"ingest-{camera}-")]
        assert seen and abs(float(seen[0]["last_seen"]) - time.time()) < 15, (camera, seen)
    assert "event=clock_skew" in behind.log_path.read_text() and "event=clock_skew" in ahead.log_path.read_text()
    status = subprocess.run(
        [sys.executable, "-m", "fervi", "status"], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "warning: Its ingest host's clock is 2.0 s behind the Redis server's clock" in status
    assert "1.0 h ahead of the Redis server's clock" in status
