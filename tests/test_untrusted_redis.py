"""Names and entries in Redis are untrusted input: any client can write them, and none may stop a process."""

from __future__ import annotations

import json

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
    worker = processes.start(["worker"], env, "worker")
    tracker = processes.start(["tracker"], env, "tracker")
    dashboard = processes.start(["dashboard"], env, "dashboard")
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
    result = CliRunner().invoke(main, ["status", "--json"], env={"FERVI_REDIS_URL": redis_url})
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.stdout)["cameras"]) == ["lobby"]
    assert dashboard.poll() is None
