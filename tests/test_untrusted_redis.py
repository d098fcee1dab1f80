"""Names and entries in Redis are untrusted input: any client can write them, and none may stop a process."""

from __future__ import annotations

import json
import time

import redis
from click.testing import CliRunner

from fervi.bus import CAMERAS, Bus, tracks_key
from fervi.cli import main
from fervi.demo import write_video

from .conftest import fervi_env, http_ok, wait_for
from .test_pipeline_e2e import results_by_index

POISON = [b"\xff\xfejunk", b"has space", b"{brace}", b"../up", "é" * 70]


def test_bus_skips_camera_names_that_are_not_names(client):
    bus = Bus(client)
    bus.register_camera("door")
    client.sadd(CAMERAS, *POISON)
    assert bus.cameras() == ["door"]
    assert bus.cameras() == ["door"]  # logged once per value, counted every time


def test_a_poisoned_camera_set_stops_no_process(tmp_path, redis_url, processes):
    """SADD of junk names (any Redis client can) ended every worker and tracker with UnicodeDecodeError."""
    client = redis.Redis.from_url(redis_url)
    client.sadd(CAMERAS, *POISON)
    frames = 20
    video = write_video(tmp_path / "faces.mp4", frames=frames, fps=15)
    from fervi.embedded import free_port

    port = free_port()
    env = fervi_env(redis_url, FERVI_BLOCK_MS="200", FERVI_REORDER_WAIT="10", FERVI_DASHBOARD_PORT=str(port))
    # valid names whose keys are of another type (found by the independent run: crash loops), counters
    # that are not numbers, and a challenge round FERVI did not write
    client.set("fervi:{ghost1}:frames", "x")
    client.set("fervi:{ghost2}:results", "x")
    client.set("fervi:{ghost3}:tracks", "x")
    client.sadd(CAMERAS, "ghost1", "ghost2", "ghost3")
    client.hset("fervi:{lobby}:stats", "skipped", "abc")
    client.set("fervi:{challenge}:round:evil", '{"state": "playing"}')
    client.sadd("fervi:{challenge}:rounds", "evil")
    Bus(client).ensure_group("spare")
    Bus(client).register_camera("spare")  # a good camera now, spoilt below while the processes read it
    worker = processes.start(["worker"], env, "worker")
    tracker = processes.start(["tracker"], env, "tracker")
    dashboard = processes.start(["dashboard"], env, "dashboard")
    wait_for(lambda: "camera_joined" in worker.log_path.read_text() and "spare" in tracker.log_path.read_text(),
             60, "the processes to read the spare camera")
    for key in ("fervi:{spare}:frames", "fervi:{spare}:results", "fervi:{spare}:tracks"):
        client.delete(key)
        client.set(key, "x")
    ingest = processes.start(["ingest", str(video), "--camera", "lobby"], env, "ingest")
    assert ingest.wait(120) == 0, ingest.log_path.read_text()[-2000:]
    bus = Bus(client)
    wait_for(lambda: len(results_by_index(bus, "lobby")) == frames, 120, "a result per frame")
    wait_for(lambda: client.xlen(tracks_key("lobby")) >= frames, 60, "a tracks entry per frame")
    assert worker.poll() is None and tracker.poll() is None, worker.log_path.read_text()[-2000:]
    assert "bad_redis_value" in worker.log_path.read_text()
    wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "the dashboard")
    import urllib.request

    cameras = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/cameras", timeout=5).read())
    assert "lobby" in json.dumps(cameras) and "junk" not in json.dumps(cameras)
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'fervi_camera_frames_in_total{camera="lobby"} 20.0' in metrics
    result = CliRunner().invoke(main, ["status", "--json"], env={"FERVI_REDIS_URL": redis_url})
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.stdout)["cameras"]) == ["lobby"]
    time.sleep(2.0)  # a few relay steps over the foreign round
    assert http_ok(f"http://127.0.0.1:{port}/healthz")
    assert not client.exists("fervi:{challenge}:round:evil")  # skipped and dropped
    for process in (worker, tracker, dashboard):
        assert process.poll() is None, process.log_path.read_text()[-2000:]
        log = process.log_path.read_text()
        assert "Traceback" not in log, log[-3000:]
    assert "WRONGTYPE" in worker.log_path.read_text() or "camera_keys" in worker.log_path.read_text()
