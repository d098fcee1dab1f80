"""The doorbell (issue #28): on one Redis a frame rings its camera's reader (the worker that owns it), and an
idle worker waits on its one bell key instead of a blocking read of every stream it holds. Production workers
(null pipeline) stepped in threads against a real redis-server: they wait on their bell, read the cameras that
rang, set their cameras' readers right as workers join and leave (and when some other worker's view was older),
and keep working when some client spoils the bell keys."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from fervi.bench.worker_scaling import NullPipeline
from fervi.workers import worker as worker_module
from fervi.workers.assignment import owner
from fervi.workers.worker import Worker

from fervi.bus import Bus
from fervi.bus.keys import bell_key, reader_key, rung_key
from fervi.protocol import Frame
from fervi.settings import load_settings

from .conftest import wait_for
from .images import demo_jpeg


@contextmanager
def stepping(url: str, names: list[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Worker]]:
    """Workers stepped in threads until the block ends (each then leaves the workers, as on SIGTERM)."""
    monkeypatch.setenv("FERVI_BLOCK_MS", "200")
    workers = {name: Worker(load_settings(), url, NullPipeline(), name=name) for name in names}
    stops = {name: threading.Event() for name in names}

    def loop(worker: Worker, stop: threading.Event) -> None:
        while not stop.is_set():
            worker._step_or_rejoin()
        worker.bus.leave_workers(worker.name)

    threads = [threading.Thread(target=loop, args=(workers[n], stops[n]), daemon=True) for n in names]
    for thread in threads:
        thread.start()
    try:
        yield workers
    finally:
        for stop in stops.values():
            stop.set()
        for thread in threads:
            thread.join(10)


def cameras_on(bus: Bus, names: list[str]) -> None:
    for camera in names:
        bus.register_camera(camera)
        bus.ensure_group(camera)


def readers_follow_owners(client: redis.Redis, cameras: list[str], bus: Bus) -> bool:
    live = bus.live_workers()
    readers = client.mget([reader_key(c) for c in cameras])
    return all((r or b"").decode() == owner(c, live) for c, r in zip(cameras, readers, strict=True))


def send(bus: Bus, camera: str, jpeg: bytes) -> int:
    seq, _ = bus.add_frame(Frame(camera, time.time(), 640, 480, jpeg, live=False))
    return seq


def all_read(bus: Bus, sent: list[tuple[str, int]]) -> bool:
    """Whether each (camera, seq) sent has its result."""
    return all(any(r.seq == seq for _, r in bus.results(camera)) for camera, seq in sent)


def test_an_idle_worker_waits_on_its_bell_and_reads_only_the_cameras_that_rang(redis_url, client, monkeypatch):
    bus = Bus(client)
    cameras = [f"yard-{i:03d}" for i in range(300)]
    cameras_on(bus, cameras)
    reads: list[list[str]] = []
    read_rung = Bus.read_rung

    def spy(self, consumer, chosen, count, answered):
        reads.append(list(chosen))
        return read_rung(self, consumer, chosen, count, answered)

    monkeypatch.setattr(Bus, "read_rung", spy)
    with stepping(redis_url, ["solo"], monkeypatch) as workers:
        wait_for(lambda: len(workers["solo"].cameras) == 300, 30, "the worker holding all 300 cameras")
        wait_for(lambda: readers_follow_owners(client, cameras, bus), 10, "every camera ringing the worker")
        # waiting: blocked on one key, its bell, not on 300 streams
        blocked = wait_for(
            lambda: [c for c in client.client_list() if c["cmd"] == "blpop" and "b" in c["flags"]], 5, "a BLPOP"
        )
        assert len(blocked) == 1
        reads.clear()
        jpeg, started = demo_jpeg(), time.monotonic()
        for camera in cameras[::15]:  # 20 frames, one at a time
            seq = send(bus, camera, jpeg)
            wait_for(lambda c=camera, s=seq: all_read(bus, [(c, s)]), 10, f"{camera}'s result")
        # a read of all its cameras every BELL_SWEEP_S, READ_BUDGET cameras a read
        sweeps = (time.monotonic() - started) / worker_module.BELL_SWEEP_S + 1
        per_sweep = -(-len(cameras) // worker_module.READ_BUDGET)
    wide = [r for r in reads if len(r) > 1]
    assert len(wide) <= sweeps * per_sweep, (len(wide), sweeps)  # the others named the camera that rang only
    assert sum(len(r) == 1 for r in reads) >= 20 - len(wide), reads


def test_a_reader_key_naming_another_worker_is_read_by_the_sweep_and_set_back(redis_url, client, monkeypatch):
    """A worker that saw the workers before the last one joined may set a camera's reader after its owner did:
    the owner still reads the camera (every BELL_SWEEP_S), and sets its reader back."""
    bus = Bus(client)
    cameras = [f"gate-{i}" for i in range(8)]
    cameras_on(bus, cameras)
    with stepping(redis_url, ["keeper"], monkeypatch) as workers:
        wait_for(lambda: readers_follow_owners(client, cameras, bus), 30, "every camera ringing its owner")
        # its readers set again at its next refreshes, and no more: only the sweep can set gate-3's back
        wait_for(lambda: not workers["keeper"]._reassert, 30, "the readers set again for the last time")
        client.set(reader_key("gate-3"), "some-older-view")
        seq = send(bus, "gate-3", demo_jpeg())
        wait_for(lambda: all_read(bus, [("gate-3", seq)]), 10, "gate-3's frame read anyway")
        wait_for(lambda: client.get(reader_key("gate-3")) == b"keeper", 10, "gate-3 ringing its owner again")
        assert client.llen(bell_key("some-older-view")) == 1  # the bell it rang instead (deleted when dead)


def test_readers_follow_the_owners_as_workers_join_and_leave(redis_url, client, monkeypatch):
    bus = Bus(client)
    cameras = [f"dock-{i:02d}" for i in range(64)]
    cameras_on(bus, cameras)
    with stepping(redis_url, ["w-a"], monkeypatch):
        wait_for(lambda: readers_follow_owners(client, cameras, bus), 30, "all cameras ringing the first worker")
        with stepping(redis_url, ["w-b", "w-c", "w-d"], monkeypatch):
            wait_for(lambda: len(bus.live_workers()) == 4, 30, "4 workers")
            # the first set all 64 readers; a joiner's share moves to it (set, or handed over by the first)
            wait_for(lambda: readers_follow_owners(client, cameras, bus), 30, "readers of 4 workers' cameras")
            assert len({client.get(reader_key(c)) for c in cameras}) == 4
        # three left (SIGTERM): their cameras ring the one still there
        wait_for(lambda: len(bus.live_workers()) == 1, 30, "one worker left")
        wait_for(lambda: readers_follow_owners(client, cameras, bus), 30, "readers back on the first worker")
        assert {client.get(reader_key(c)) for c in cameras} == {b"w-a"}
        assert not client.exists(bell_key("w-b"), rung_key("w-b"))  # a worker that left takes its bell along
        jpeg = demo_jpeg()
        sent = [(camera, send(bus, camera, jpeg)) for camera in cameras[:8]]
        wait_for(lambda: all_read(bus, sent), 20, "their frames read")


def test_spoilt_bell_keys_stop_neither_ingest_nor_the_worker(redis_url, client, monkeypatch):
    bus = Bus(client)
    cameras = [f"pier-{i}" for i in range(4)]
    cameras_on(bus, cameras)
    with stepping(redis_url, ["tough"], monkeypatch):
        wait_for(lambda: readers_follow_owners(client, cameras, bus), 30, "every camera ringing the worker")
        client.delete(bell_key("tough"))
        client.set(bell_key("tough"), "not a list")  # its bell: BLPOP refused (WRONGTYPE)
        client.hset(rung_key("tough"), "x", "1")  # its rung set: SADD refused inside the ingest script
        client.delete(reader_key("pier-1"))
        client.rpush(reader_key("pier-1"), "a", "list")  # a reader key that GET refuses
        jpeg = demo_jpeg()
        sent = [(camera, send(bus, camera, jpeg)) for camera in cameras for _ in range(3)]  # ingest goes on
        wait_for(lambda: all_read(bus, sent), 20, "every frame's result")
        # the spoilt keys were dropped (and the reader set again by the sweep): the bell works again
        wait_for(lambda: client.type(bell_key("tough")) in (b"list", b"none"), 10, "the bell a list again")
        wait_for(lambda: client.get(reader_key("pier-1")) == b"tough", 10, "pier-1's reader set again")
