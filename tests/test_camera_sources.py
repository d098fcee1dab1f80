"""Cameras FERVI runs for you: the registry (`fervi cameras`, the dashboard's Cameras page), the supervisor
that runs one ingest per camera (real processes on a real redis-server), and each camera's reported state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from fervi.bus import Bus, frames_key, source_lease_key, source_state_key
from fervi.demo import write_video
from fervi.protocol import CameraSource, ProtocolError, check_source, source_kind

from .conftest import fervi_env, wait_for


@pytest.mark.parametrize(
    "spec, kind",
    [
        ("0", "webcam"),
        ("12", "webcam"),
        ("rtsp://cam.local/stream", "stream"),
        ("https://user:pw@host/video.mjpg", "stream"),
        ("/srv/videos/a.mp4", "file"),
    ],
)
def test_a_source_is_a_webcam_index_a_stream_url_or_an_absolute_path(spec, kind):
    assert check_source(spec) == spec
    assert source_kind(spec) == kind


@pytest.mark.parametrize(
    "spec, why",
    [
        ("", "empty"),
        ("  ", "empty"),
        ("videos/a.mp4", "absolute"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://x", "scheme"),
        ("rtsp://", "no host"),
        ("/a\nb", "printable"),
        ("/" + "a" * 1100, "at most"),
    ],
)
def test_bad_sources_are_refused_with_the_reason(spec, why):
    with pytest.raises(ProtocolError, match=why):
        check_source(spec)


def test_camera_sources_round_trip_and_refuse_the_dashboards_own_names():
    source = CameraSource("door", "rtsp://cam/1", fps=5, live=True, origin="dashboard", added_at=1.5)
    assert CameraSource.from_json(source.to_json()) == source
    assert source.ingest_args() == ["ingest", "-", "--camera", "door", "--fps", "5", "--live"]  # source: env
    assert source.ingest_env() == {"FERVI_INGEST_SOURCE": "rtsp://cam/1"}
    for name in ("web-1", "image-abc", "../x"):
        with pytest.raises(ProtocolError):
            CameraSource(name, "0")
    with pytest.raises(ProtocolError, match="fps"):
        CameraSource("door", "0", fps=500)
    with pytest.raises(ProtocolError):
        CameraSource.from_json(b'{"camera": "x"}')


def _state(bus: Bus, camera: str) -> dict:
    return bus.source_states([camera]).get(camera, {})


def _ingests(bus: Bus, camera: str) -> list[str]:
    return [
        name for name, info in bus.processes().items() if info.get("kind") == "ingest" and info.get("camera") == camera
    ]


def test_the_supervisor_runs_restarts_and_stops_each_camera_and_says_how_it_goes(tmp_path, redis_url, processes):
    bus = Bus(redis.Redis.from_url(redis_url))
    env = fervi_env(redis_url, FERVI_HEARTBEAT_TTL="5")
    processes.start(["cameras", "supervise"], env, "supervisor")
    short = write_video(tmp_path / "short.mp4", frames=12, fps=10)
    loop = write_video(tmp_path / "loop.mp4", frames=20, fps=10)

    assert bus.add_source(CameraSource("clip", str(short)))
    assert not bus.add_source(CameraSource("clip", str(loop)))  # the name is taken
    ended = wait_for(lambda: _state(bus, "clip").get("state") == "ended" and _state(bus, "clip"), 60, "clip to end")
    assert ended["sent"] == "12" and bus.redis.xlen(frames_key("clip")) == 12

    bus.add_source(CameraSource("lobby", str(loop), fps=10, loop=True, live=True))
    wait_for(lambda: _state(bus, "lobby").get("state") == "live", 60, "lobby to go live")
    wait_for(lambda: _ingests(bus, "lobby"), 30, "lobby's ingest heartbeat")

    bus.add_source(CameraSource("gone", str(tmp_path / "not-there.mp4")))
    failed = wait_for(
        lambda: "trying again" in _state(bus, "gone").get("reason", "") and _state(bus, "gone"),
        60,
        "the missing file's error",
    )
    assert failed["state"] == "error" and "no such file" in failed["reason"]
    (tmp_path / "not-there.mp4").write_bytes(short.read_bytes())  # the file appears: the next try plays it
    wait_for(lambda: _state(bus, "gone").get("state") == "ended", 60, "the file that appeared to play")

    assert bus.remove_source("lobby")
    wait_for(lambda: not _ingests(bus, "lobby"), 30, "lobby's ingest to stop")
    wait_for(lambda: _state(bus, "lobby") == {}, 15, "lobby's state to go with it")
    assert bus.redis.xlen(frames_key("lobby")) > 0  # its frames (and charts) stay


def test_supervisors_share_cameras_and_take_over_from_one_that_died(tmp_path, redis_url, processes):
    bus = Bus(redis.Redis.from_url(redis_url))
    env = fervi_env(redis_url, FERVI_HEARTBEAT_TTL="5")
    supervisors = [processes.start(["cameras", "supervise"], env, name) for name in ("first", "second")]
    loop = write_video(tmp_path / "loop.mp4", frames=20, fps=10)
    for camera in ("hall", "yard"):
        bus.add_source(CameraSource(camera, str(loop), fps=5, loop=True, live=True))
    for camera in ("hall", "yard"):
        wait_for(lambda camera=camera: _state(bus, camera).get("state") == "live", 60, f"{camera} live")
    wait_for(lambda: all(len(_ingests(bus, c)) == 1 for c in ("hall", "yard")), 30, "one ingest per camera")
    time.sleep(3)
    assert all(len(_ingests(bus, c)) == 1 for c in ("hall", "yard"))  # and it stays one

    holder = bus.redis.get(source_lease_key("hall")).decode()
    before = _state(bus, "hall")["pid"]
    owner = next(p for p in supervisors if holder.endswith(f"-{p.pid}"))
    os.kill(owner.pid, signal.SIGKILL)  # its ingests get SIGTERM from the kernel; its leases run out
    wait_for(
        lambda: _state(bus, "hall").get("state") == "live" and _state(bus, "hall")["pid"] != before,
        60,
        "hall live again under the other supervisor",
    )
    assert bus.redis.get(source_lease_key("hall")).decode() != holder
    assert len(_ingests(bus, "hall")) == 1


def _fervi(args: list[str], env: dict, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fervi", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_fervi_cameras_add_list_and_remove(tmp_path, redis_url):
    env = fervi_env(redis_url)
    (tmp_path / "v.mp4").write_bytes(b"")
    added = _fervi(["cameras", "add", "porch", "v.mp4", "--loop"], env, tmp_path)
    assert added.returncode == 0, added.stderr
    assert "no supervisor runs" in added.stdout
    assert Bus(redis.Redis.from_url(redis_url)).sources()["porch"].source == str(tmp_path / "v.mp4")
    again = _fervi(["cameras", "add", "porch", "1"], env, tmp_path)
    assert again.returncode == 1 and "exists" in again.stderr and "Traceback" not in again.stderr
    Bus(redis.Redis.from_url(redis_url)).redis.hset(
        "fervi:proc:ingest-hand-1", mapping={"kind": "ingest", "camera": "byhand"}
    )
    taken = _fervi(["cameras", "add", "byhand", "0"], env, tmp_path)  # `fervi ingest --camera byhand` runs
    assert taken.returncode == 1 and "already streams" in taken.stderr
    bad = _fervi(["cameras", "add", "web-x", "0"], env, tmp_path)
    assert bad.returncode == 2 and "dashboard's own" in bad.stderr
    _fervi(["cameras", "add", "door", "rtsp://admin:hunter2@10.0.0.9/live"], env, tmp_path)
    listed = _fervi(["cameras", "list"], env, tmp_path)
    assert "porch" in listed.stdout and "waiting for a supervisor" in listed.stdout
    assert "hunter2" not in listed.stdout and "admin:***@10.0.0.9" in listed.stdout
    assert _fervi(["cameras", "remove", "porch"], env, tmp_path).stdout.strip() == "removed porch"
    missing = _fervi(["cameras", "remove", "porch"], env, tmp_path)
    assert missing.returncode == 1 and "not registered: porch" in missing.stderr


def test_spoilt_registry_entries_are_skipped_not_fatal(client):
    """Any client may write the registry: entries that do not parse are skipped and counted."""
    bus = Bus(client)
    client.hset(
        "fervi:sources",
        mapping={
            "junk": "not json",
            "alias": CameraSource("other", "0").to_json(),
            "evil": '{"camera": "evil", "source": "file:///etc/passwd"}',
        },
    )
    assert bus.add_source(CameraSource("ok", "rtsp://cam/1"))
    assert list(bus.sources()) == ["ok"]
    client.set(source_state_key("ok"), "a string, not a hash")
    bus.set_source_state("ok", "live")  # refused by Redis (WRONGTYPE): the news is lost, nothing raised
    assert bus.source_states(["ok"]) == {}
    # when a camera was removed: a note that does not parse is skipped, a key that is not a hash ignored
    client.hset("fervi:removed", mapping={"junk": "yesterday", "old": "1700000000.5"})
    assert bus.remove_source("ok")
    removed = bus.removed_sources()
    assert set(removed) == {"old", "ok"} and removed["old"] == 1700000000.5 and removed["ok"] > 1700000000.5
    assert bus.add_source(CameraSource("ok", "rtsp://cam/1")) and "ok" not in bus.removed_sources()
    client.delete("fervi:removed")
    client.set("fervi:removed", "a string, not a hash")
    assert bus.remove_source("ok") and bus.removed_sources() == {}


def test_the_registry_holds_at_most_cameras_max(client):
    """Each camera is a process the supervisor starts: a client cannot register thousands."""
    from fervi.bus import RegistryFull

    bus = Bus(client)
    for i in range(3):
        assert bus.add_source(CameraSource(f"cam{i}", "0"), most=3)
    with pytest.raises(RegistryFull, match="FERVI_CAMERAS_MAX"):
        bus.add_source(CameraSource("cam3", "0"), most=3)
    assert bus.add_source(CameraSource("cam1", "1"), replace=True, most=3)  # replacing one is not one more
    assert bus.sources()["cam1"].source == "1"
