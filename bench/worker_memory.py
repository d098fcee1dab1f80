"""A worker's memory with many cameras of large frames (issue #27, defect 4): `--cameras` cameras each queue
one `--size` x `--size` frame (the largest FERVI_MAX_FRAME_PIXELS allows by default) into a real Redis; one
real `fervi worker` process takes them all. Prints JSON: the worker's peak resident memory (VmHWM), whether
it exited, and the seconds until every frame had its result.

    python -m fervi.bench.worker_memory --cameras 64 --size 4096 [--out bench/results/worker_memory-....json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from fervi.bus import Bus, connect
from fervi.embedded import EmbeddedRedis
from fervi.protocol import Frame


def big_frame(size: int) -> bytes:
    """A smooth size x size picture: a small JPEG that decodes to size * size * 3 bytes."""
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    image = np.stack([np.add.outer(ramp, ramp) / 2] * 3, axis=-1).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return jpeg.tobytes()


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run(cameras: int, size: int, timeout_s: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        bus = Bus(connect(server.url))
        jpeg = big_frame(size)
        names = [f"big-{i:03d}" for i in range(cameras)]
        for name in names:
            bus.register_camera(name)
            bus.ensure_group(name)
            bus.add_frame(Frame(name, time.time(), size, size, jpeg, live=False))
        env = {**os.environ, "FERVI_REDIS_URL": server.url, "FERVI_LOG_LEVEL": "WARNING"}
        started = time.monotonic()
        worker = subprocess.Popen([sys.executable, "-m", "fervi", "worker"], env=env, stderr=subprocess.PIPE)
        peak, done = 0.0, 0
        while time.monotonic() - started < timeout_s and worker.poll() is None:
            peak = max(peak, peak_rss_mb(worker.pid))
            done = sum(1 for name in names if bus.results(name))
            if done == cameras:
                break
            time.sleep(0.2)
        seconds = time.monotonic() - started
        exited = worker.poll()
        worker.terminate()
        stderr = worker.communicate(timeout=30)[1].decode(errors="replace")
        return {
            "cameras": cameras,
            "frame": f"{size}x{size}",
            "jpeg_bytes": len(jpeg),
            "decoded_mb_per_frame": round(size * size * 3 / 2**20, 1),
            "worker_peak_rss_mb": round(peak, 1),
            "results": done,
            "seconds_to_all_results": round(seconds, 1) if done == cameras else None,
            "worker_exited": exited,
            "worker_stderr_tail": stderr[-400:] if exited else "",
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=64)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--label", default="", help="what ran (e.g. the commit)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = {
        "bench": "worker_memory",
        "label": args.label,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        **run(args.cameras, args.size, args.timeout),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
