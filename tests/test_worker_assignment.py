"""Cameras assigned to workers (issue #28): each worker reads the cameras it owns among the live workers;
when one dies (kill -9), its cameras move to the others within its lease and the frames it held are
reclaimed within the claim timeout, each frame with exactly one result and one tracks entry; a camera that
appears meanwhile is read too. Real `fervi worker` processes (the shipped model) and a real tracker, then 16
production workers with a null pipeline, on a real redis-server."""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import signal
import threading
import time

import redis
from fervi.workers.assignment import owner

from fervi.bus import Bus
from fervi.protocol import Frame

from .conftest import fervi_env, wait_for
from .images import demo_jpeg

CLAIM_TIMEOUT_S = 6.0
CAMERAS = [f"door-{i}" for i in range(6)]


def feed(bus: Bus, cameras: list[str], fps: float, stop: threading.Event, sent: dict[str, int], jpeg: bytes) -> None:
    """File frames (never skipped) to each camera at `fps`, until `stop`."""
    while not stop.is_set():
        for camera in list(cameras):
            bus.add_frame(Frame(camera, time.time(), 640, 480, jpeg, live=False))
            sent[camera] = sent.get(camera, 0) + 1
        stop.wait(1 / fps)


def owned_by_log(log: str) -> tuple[str, int, int]:
    """(worker name, cameras it owns, live workers) from a worker's last `cameras_assigned` line."""
    found = re.findall(r"event=cameras_assigned worker=(\S+) own=(\d+) workers=(\d+)", log)
    name, own, workers = found[-1] if found else ("", "0", "0")
    return name, int(own), int(workers)


def moved_within(bus: Bus, cameras: list[str], dead: str, since: float, timeout_s: float) -> float:
    """Seconds from `since` until each of `cameras` has a result from a worker other than `dead`."""

    def moved() -> bool:
        return all(any(r.worker != dead and r.captured_at > since for _, r in bus.results(c)) for c in cameras)

    wait_for(moved, timeout_s, "the dead worker's cameras read by others")
    return time.time() - since


def assert_exactly_once(bus: Bus, cameras: list[str], sent: dict[str, int], tracks: bool) -> None:
    def all_done() -> bool:
        return all(
            len({r.seq for _, r in bus.results(c)}) == sent[c] and (not tracks or len(bus.track_entries(c)) >= sent[c])
            for c in cameras
        )

    wait_for(all_done, 120, "a result (and a tracks entry) for every frame sent")
    for camera in cameras:
        seqs = [r.seq for _, r in bus.results(camera)]
        assert len(seqs) == len(set(seqs)) == sent[camera], camera  # exactly once
        assert bus.pending(camera) == 0
        if tracks:
            tracked = [entry.seq for _, entry in bus.track_entries(camera)]
            assert sorted(tracked) == sorted(seqs), camera


def test_a_dead_worker_s_cameras_move_and_no_frame_is_lost_or_doubled(tmp_path, redis_url, processes):
    env = fervi_env(redis_url, FERVI_CLAIM_TIMEOUT=str(CLAIM_TIMEOUT_S), FERVI_BLOCK_MS="200")
    bus = Bus(redis.Redis.from_url(redis_url))
    for camera in CAMERAS:
        bus.register_camera(camera)
    workers = [processes.start(["worker"], env, f"worker-{i}") for i in range(3)]
    processes.start(["tracker"], env, "tracker")
    wait_for(lambda: all(owned_by_log(w.log_path.read_text())[2] == 3 for w in workers), 120, "3 workers assigned")
    # every camera has exactly one owner, the one every worker computes from the same leases
    live = bus.live_workers()
    owners = {camera: owner(camera, live) for camera in CAMERAS}
    shares = {name: own for name, own, _ in (owned_by_log(w.log_path.read_text()) for w in workers)}
    assert len(live) == 3 and sum(shares.values()) == len(CAMERAS), shares
    assert all(list(owners.values()).count(name) == own for name, own in shares.items()), (owners, shares)
    cameras, sent, stop = list(CAMERAS), {}, threading.Event()
    feeder = threading.Thread(
        target=feed, args=(Bus(redis.Redis.from_url(redis_url)), cameras, 1.0, stop, sent, demo_jpeg())
    )
    feeder.start()
    try:
        wait_for(lambda: all(bus.results(c) for c in CAMERAS), 120, "results on every camera")
        victim = max(workers, key=lambda w: shares[owned_by_log(w.log_path.read_text())[0]])
        victim_name = owned_by_log(victim.log_path.read_text())[0]
        lost = [c for c, name in owners.items() if name == victim_name]
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.time()
        cameras.append("door-new")  # a camera that appears while the workers rebalance
        bus.register_camera("door-new")
        rebalance_s = moved_within(bus, [*lost, "door-new"], victim_name, killed_at, CLAIM_TIMEOUT_S + 10)
        print(f"rebalance after kill -9: {rebalance_s:.1f} s (claim timeout {CLAIM_TIMEOUT_S:g} s)")
        assert rebalance_s < CLAIM_TIMEOUT_S + 2, rebalance_s
        time.sleep(1)
    finally:
        stop.set()
        feeder.join()
    assert_exactly_once(bus, cameras, sent, tracks=True)


def _null_worker(url: str, name: str, claim_timeout_s: float) -> None:
    os.environ.update(FERVI_CLAIM_TIMEOUT=str(claim_timeout_s), FERVI_BLOCK_MS="200")
    from fervi.bench.worker_scaling import run_null_worker

    run_null_worker(url, name)


def test_kill_9_of_one_of_16_workers_moves_its_cameras_within_the_claim_timeout(redis_url):
    """16 production workers (null pipeline: the real reads, reclaims, leases and results), 32 file cameras;
    one killed: its cameras are read by others within FERVI_CLAIM_TIMEOUT + 2 s, no frame lost or doubled."""
    bus = Bus(redis.Redis.from_url(redis_url))
    names = [f"null-{i:02d}" for i in range(16)]
    cameras = [f"hall-{i:02d}" for i in range(32)]
    for camera in cameras:
        bus.register_camera(camera)
    context = mp.get_context("spawn")
    workers = {n: context.Process(target=_null_worker, args=(redis_url, n, CLAIM_TIMEOUT_S)) for n in names}
    for process in workers.values():
        process.start()
    sent: dict[str, int] = {}
    stop = threading.Event()
    try:
        wait_for(lambda: len(bus.live_workers()) == 16, 180, "16 workers holding leases")
        time.sleep(2)  # each took its cameras at its next refresh
        live = bus.live_workers()
        victim = max(names, key=lambda n: sum(owner(c, live) == n for c in cameras))
        lost = [c for c in cameras if owner(c, live) == victim]
        feeder = threading.Thread(
            target=feed, args=(Bus(redis.Redis.from_url(redis_url)), cameras, 2.0, stop, sent, demo_jpeg())
        )
        feeder.start()
        wait_for(lambda: all(bus.results(c) for c in cameras), 60, "results on every camera")
        assert {r.worker for c in lost for _, r in bus.results(c)} == {victim}  # its cameras were its own
        workers[victim].kill()
        killed_at = time.time()
        rebalance_s = moved_within(bus, lost, victim, killed_at, CLAIM_TIMEOUT_S + 10)
        print(f"rebalance after kill -9: {rebalance_s:.1f} s (claim timeout {CLAIM_TIMEOUT_S:g} s)")
        assert rebalance_s < CLAIM_TIMEOUT_S + 2, rebalance_s
        time.sleep(1)
        stop.set()
        feeder.join()
        assert_exactly_once(bus, cameras, sent, tracks=False)
    finally:
        stop.set()
        for process in workers.values():
            process.terminate()
        for process in workers.values():
            process.join(30)
            if process.is_alive():
                process.kill()
