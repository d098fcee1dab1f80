"""The tracker killed (-9) in the middle of a file: does every frame still get exactly one tracks entry, in seq
order, and do the statistics equal those of an uninterrupted run?

    python -m fervi.bench.tracker_crashes [--frames 1800] [--kills 3] [--out FILE]

Two cameras get the same frames and results (two faces; one leaves for 1.5 s, so tracks end and start),
written straight to a real Redis as the workers would (published out of order within chunks of 8, as several
workers finish them): the workers' part is not what this measures, and the run stays short. One tracker
(`--shard 0/2`) is killed -9 `--kills` times and restarted a second later; the other camera's tracker
(`--shard 1/2`) is never touched. Prints one JSON object: per camera the tracks entries, distinct seqs, order
inversions, tracks left open, tracks and face-seconds per emotion; and the killed camera's differences.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import tempfile
import time
import zlib
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from fervi.bus import Bus, connect, tracks_key
from fervi.bus.core import sync
from fervi.emotions import EMOTIONS, NUM_EMOTIONS
from fervi.faces import Faces
from fervi.protocol import Frame, Result
from fervi.service import spawn, stop_processes

FPS = 30.0
CHUNK = 8  # results published out of order within chunks of this many frames (two workers)
AWAY = (600, 645)  # frames in which the second face is off camera (1.5 s at 30 fps: its track ends)
# a file: the reorder window waits for a slow result rather than give up on its seq
TRACKER_ENV = {"FERVI_BLOCK_MS": "200", "FERVI_REORDER_WAIT": "10", "FERVI_CLAIM_TIMEOUT": "2"}


def camera_on_shard(prefix: str, shard: int, shards: int = 2) -> str:
    """A camera name that `fervi tracker --shard shard/shards` tracks (the tracker's stable hash)."""
    return next(f"{prefix}{i}" for i in range(1000) if zlib.crc32(f"{prefix}{i}".encode()) % shards == shard)


def frame_faces(index: int) -> Faces:
    """Frame `index`'s faces: one walking right, one walking left (away in AWAY), emotions drifting."""
    t = index / FPS
    boxes = [[40 + 4 * t, 120, 90, 90]]
    if not AWAY[0] <= index < AWAY[1]:
        boxes.append([480 - 3 * t, 200, 80, 80])
    probs = []
    for n in range(len(boxes)):
        raw = np.array([1.0 + math.sin(0.3 * t + n + k) for k in range(NUM_EMOTIONS)]) + 0.05
        probs.append(raw / raw.sum())
    return Faces(np.array(boxes, np.float32), np.ones(len(boxes), np.float32), np.array(probs, np.float32))


class Feeder:
    """Writes a camera's frames and their results as ingest and two workers would: `feed(n)` the next n."""

    def __init__(self, bus: Bus, camera: str, frames: int, t0: float, seed: int = 0):
        self.bus, self.camera, self.frames, self.t0 = bus, camera, frames, t0
        self.rng = np.random.default_rng(seed)
        self.index = 0
        bus.register_camera(camera)
        bus.ensure_group(camera)

    def feed(self, count: int) -> None:
        while count > 0 and self.index < self.frames:
            n = min(count, CHUNK, self.frames - self.index)
            added = []
            for index in range(self.index, self.index + n):
                frame = Frame(self.camera, self.t0 + index / FPS, 640, 480, b"\xff", live=False, index=index)
                added.append((index, *self.bus.add_frame(frame)))
            for k in self.rng.permutation(n):
                index, seq, entry_id = added[k]
                now = time.time()
                result = Result(
                    self.camera, seq, index, self.t0 + index / FPS, now, now, "bench", 640, 480, frame_faces(index)
                )
                self.bus.publish_result(result, entry_id, 100_000)
            self.index += n
            count -= n

    @property
    def done(self) -> bool:
        return self.index >= self.frames


def tracks_written(bus: Bus, camera: str) -> int:
    return int(sync(bus.redis.xlen(tracks_key(camera))))


def report(bus: Bus, camera: str, t0: float, frames: int) -> dict[str, Any]:
    entries = [entry for _, entry in bus.track_entries(camera)]
    seqs = [e.seq for e in entries]
    series = bus.emotion_series(camera, "1s", t0 - 2, t0 + frames / FPS + 2)
    tracks = sorted(bus.tracks(camera, since=0, limit=1000), key=lambda t: t["start"])
    return {
        "entries": len(entries),
        "distinct_seqs": len(set(seqs)),
        "order_inversions": sum(b < a for a, b in pairwise(seqs)),
        "open_tracks": sum(t["open"] for t in tracks),
        "tracks": len(tracks),
        "track_seconds": [round(sum(t["seconds"].values()), 3) for t in tracks],
        "face_seconds": {e: round(sum(series[e]), 3) for e in EMOTIONS},
        "observed_s": round(sum(series["observed"]), 3),
    }


def differences(killed: dict[str, Any], steady: dict[str, Any]) -> dict[str, Any]:
    """Largest gaps between the killed camera's statistics and the uninterrupted one's."""
    seconds = [abs(a - b) for a, b in zip(killed["track_seconds"], steady["track_seconds"], strict=False)]
    return {
        "face_seconds": round(max(abs(killed["face_seconds"][e] - steady["face_seconds"][e]) for e in EMOTIONS), 3),
        "tracks": killed["tracks"] - steady["tracks"],
        "track_seconds": round(max(seconds, default=0.0), 3),
    }


class Trackers:
    """The two tracker processes (shard 0: killed; shard 1: left alone), their logs in `log_dir`."""

    def __init__(self, redis_url: str, log_dir: Path):
        self.env = {**os.environ, "FERVI_REDIS_URL": redis_url, "FERVI_LOG_LEVEL": "INFO", **TRACKER_ENV}
        self.log_dir, self.started = log_dir, list[subprocess.Popen[bytes]]()
        self.victim = self.start(0)
        self.start(1)

    def start(self, shard: int) -> subprocess.Popen[bytes]:
        with open(self.log_dir / f"tracker{shard}-{len(self.started)}.log", "wb") as log:
            process = spawn(["tracker", "--shard", f"{shard}/2"], self.env, stdout=log, stderr=subprocess.STDOUT)
        self.started.append(process)
        return process

    def kill_victim(self) -> None:
        os.kill(self.victim.pid, signal.SIGKILL)
        self.victim.wait()

    def stop(self) -> None:
        stop_processes(self.started, 10)


def run(redis_url: str, frames: int = 1800, kills: int = 3, rate: float = 300.0, log_dir: Path | None = None) -> dict:
    """Feed both cameras at `rate` frames/s, kill the shard-0 tracker `kills` times (evenly through the file,
    counted in its tracks entries), wait until both cameras' tracks ended, and report."""
    bus = Bus(connect(redis_url))
    killed, steady = camera_on_shard("crash", 0), camera_on_shard("steady", 1)
    t0 = float(int(time.time()) - frames / FPS - 30)
    feeders = [Feeder(bus, killed, frames, t0), Feeder(bus, steady, frames, t0)]
    trackers = Trackers(redis_url, log_dir or Path(tempfile.mkdtemp(prefix="tracker-crashes-")))
    kill_at = [frames * (k + 1) // (kills + 2) for k in range(kills)]
    dead_since: float | None = None
    deadline = time.monotonic() + 120
    try:
        time.sleep(1.0)
        while (not all(f.done for f in feeders) or kill_at or dead_since is not None) and time.monotonic() < deadline:
            for feeder in feeders:
                feeder.feed(CHUNK)
            if dead_since is None and kill_at and tracks_written(bus, killed) >= kill_at[0]:
                trackers.kill_victim()
                kill_at.pop(0)
                dead_since = time.monotonic()
            elif dead_since is not None and time.monotonic() - dead_since >= 1.0:
                trackers.victim, dead_since = trackers.start(0), None
            time.sleep(CHUNK / rate)
        wait_until_ended(bus, (killed, steady), frames)
        cameras = {"killed": report(bus, killed, t0, frames), "steady": report(bus, steady, t0, frames)}
        return {"frames": frames, "kills": kills, **cameras, "differences": differences(*cameras.values())}
    finally:
        trackers.stop()


def wait_until_ended(bus: Bus, cameras: tuple[str, ...], frames: int, timeout_s: float = 60.0) -> None:
    """Until every camera has a tracks entry per frame (or more) and no open track (its tracker ends them once
    the camera is quiet), or `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(
            tracks_written(bus, c) >= frames and not any(t["open"] for t in bus.tracks(c, since=0, limit=1000))
            for c in cameras
        ):
            return
        time.sleep(0.25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1800)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--rate", type=float, default=300.0, help="frames/s written per camera")
    parser.add_argument("--redis-url", help="a Redis to use (default: an embedded one)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from fervi.embedded import EmbeddedRedis

    with tempfile.TemporaryDirectory() as folder:
        server = None if args.redis_url else EmbeddedRedis(Path(folder) / "redis").start()
        try:
            url = args.redis_url if server is None else server.url
            result = run(url, args.frames, args.kills, args.rate, Path(folder))
        finally:
            if server:
                server.stop()
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
