"""Cameras assigned to workers (issue #28): each worker reads the cameras it owns among the live workers;
when one dies (kill -9), its cameras move to the others within its lease and the frames it held are
reclaimed within the claim timeout, each frame with exactly one result; a camera that appears meanwhile is
read too. Real `fervi worker` processes (the shipped model) on a real redis-server."""

from __future__ import annotations

import os
import signal
import threading
import time

import redis

from fervi.bus import Bus
from fervi.protocol import Frame

from .conftest import fervi_env, wait_for
from .images import demo_jpeg

CLAIM_TIMEOUT_S = 6.0
CAMERAS = [f"door-{i}" for i in range(6)]


def feed(bus: Bus, cameras: list[str], fps: float, stop: threading.Event, sent: dict[str, int]) -> None:
    """File frames (never skipped) to each camera at `fps`, until `stop`."""
    jpeg = demo_jpeg()
    while not stop.is_set():
        for camera in list(cameras):
            bus.add_frame(Frame(camera, time.time(), 640, 480, jpeg, live=False))
            sent[camera] = sent.get(camera, 0) + 1
        stop.wait(1 / fps)


def test_a_dead_worker_s_cameras_move_and_no_frame_is_lost_or_doubled(tmp_path, redis_url, processes):
    env = fervi_env(redis_url, FERVI_CLAIM_TIMEOUT=str(CLAIM_TIMEOUT_S), FERVI_BLOCK_MS="200")
    bus = Bus(redis.Redis.from_url(redis_url))
    for camera in CAMERAS:
        bus.register_camera(camera)
    workers = [processes.start(["worker"], env, f"worker-{i}") for i in range(3)]
    cameras, sent, stop = list(CAMERAS), {}, threading.Event()
    feeder = threading.Thread(target=feed, args=(Bus(redis.Redis.from_url(redis_url)), cameras, 2.0, stop, sent))
    feeder.start()
    try:
        wait_for(lambda: all(bus.results(c) for c in CAMERAS), 120, "results on every camera")
        time.sleep(3)  # every worker holds its lease by now: the assignment is settled
        settled = time.time()
        wait_for(
            lambda: all(any(r.captured_at > settled + 1 for _, r in bus.results(c)) for c in CAMERAS),
            60,
            "results after the assignment settled",
        )
        by_worker: dict[str, set[str]] = {}
        for camera in CAMERAS:
            for _, result in bus.results(camera):
                if result.captured_at > settled:
                    by_worker.setdefault(result.worker, set()).add(camera)
        assert all(len(c) < len(CAMERAS) for c in by_worker.values()), by_worker  # shared, not all read all
        victim = workers[0]
        victim_name = next(w for w in by_worker if w.endswith(f"-{victim.pid}"))
        lost = by_worker[victim_name]
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.time()
        cameras.append("door-new")  # a camera that appears while the workers rebalance
        bus.register_camera("door-new")

        def moved() -> bool:
            return all(
                any(r.worker != victim_name and r.captured_at > killed_at for _, r in bus.results(c))
                for c in [*lost, "door-new"]
            )

        wait_for(moved, CLAIM_TIMEOUT_S + 10, "the dead worker's cameras read by others")
        rebalance_s = time.time() - killed_at
        assert rebalance_s < CLAIM_TIMEOUT_S + 2, rebalance_s
        time.sleep(1)
    finally:
        stop.set()
        feeder.join()

    def all_done() -> bool:
        return all(len({r.seq for _, r in bus.results(c)}) == sent[c] for c in cameras)

    wait_for(all_done, 120, "a result for every frame sent")
    for camera in cameras:
        seqs = [r.seq for _, r in bus.results(camera)]
        assert len(seqs) == len(set(seqs)) == sent[camera], camera  # exactly once
        assert bus.pending(camera) == 0
