"""Names and entries in Redis are untrusted input: any client can write them, and none may stop a process."""

from __future__ import annotations

import json
import time

import redis
from click.testing import CliRunner

from fervi.app.cli import main
from fervi.bus import CAMERAS, Bus, tracks_key
from fervi.demo import write_video

from .conftest import fervi_env, http_ok, wait_for
from .test_pipeline_e2e import dead_letters, results_by_index

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
    wait_for(
        lambda: "camera_joined" in worker.log_path.read_text() and "spare" in tracker.log_path.read_text(),
        60,
        "the processes to read the spare camera",
    )
    for key in ("fervi:{spare}:frames", "fervi:{spare}:results", "fervi:{spare}:tracks"):
        client.delete(key)
        client.set(key, "x")
    wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "the dashboard")
    ingest = processes.start(["ingest", str(video), "--camera", "lobby"], env, "ingest")
    assert ingest.wait(120) == 0, ingest.log_path.read_text()[-2000:]
    bus = Bus(client)
    wait_for(lambda: len(results_by_index(bus, "lobby")) == frames, 120, "a result per frame")
    wait_for(lambda: client.xlen(tracks_key("lobby")) >= frames, 60, "a tracks entry per frame")
    assert worker.poll() is None and tracker.poll() is None, worker.log_path.read_text()[-2000:]
    assert "bad_redis_value" in worker.log_path.read_text()
    import urllib.request

    # lobby is a file's camera, not registered: listed while its last frame is under 15 s old (CAMERA_GONE_S),
    # so the dashboard is up before the ingest starts (a slow start on a loaded CI machine outlasted that)
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


def test_keys_of_another_type_and_counters_that_are_not_numbers_are_skipped(client):
    """Found by the re-check: `HSET stats skipped abc` made the worker crash-loop at its next stale frame,
    and a `live` or `latest` key of another type made the dashboard relay fail every second."""
    from fervi.bus import frames_key
    from fervi.protocol import DeadLetter

    bus = Bus(client)
    for camera in ("door", "hall", "yard"):
        bus.ensure_group(camera)
        bus.register_camera(camera)
    client.set("fervi:{hall}:live", "x")
    client.set("fervi:{yard}:latest", "x")
    assert bus.cameras() == ["door"]
    client.hset("fervi:{door}:stats", "skipped", "abc")
    bus.count("door", "skipped")  # skipped, not raised
    entry = client.xadd(frames_key("door"), {"x": "1"}).decode()
    bus.dead_letter(DeadLetter("door", entry, "test", "me", 0.0, {}))
    assert client.xlen(frames_key("door")) == 0 and len(dead_letters(bus, "door")) == 1  # still acked and kept
    assert bus.stats("door") == {"dead_lettered": 1}  # the spoilt counter is left out
    client.set("fervi:{door}:agg:1s:0", "x")
    client.hset(f"fervi:{{door}}:agg:1s:{int(time.time()) // 60 * 60}", "bad", "1")
    assert bus.emotion_series("door", "1s", 0, 120)["t"]  # the spoilt keys give no data
    assert bus.active_faces("hall") == 0 and bus.tracks("hall") == []
    # found by the second re-check: nan in an aggregate made the chart's JSON invalid; one foreign member of
    # the track index hid every track
    minute = int(time.time()) // 60 * 60
    client.hset(f"fervi:{{door}}:agg:1s:{minute}", mapping={f"{minute + 1}:fear": "nan", f"{minute + 2}:happy": "2"})
    series = bus.emotion_series("door", "1s", minute, minute + 59)
    assert sum(series["happy"]) == 2 and sum(series["fear"]) == 0
    client.hset("fervi:{door}:track:7", mapping={"id": 7, "start": 1, "end": 2, "frames": 3, "dominant": "sad"})
    client.zadd("fervi:{door}:tracklist", {"7": time.time(), "notanid": time.time()})
    assert [t["id"] for t in bus.tracks("door")] == [7]


def test_a_deleted_seq_counter_starts_again_after_the_newest_seq(client):
    """Found by the second re-check: DEL of a camera's seq counter gave seqs again from 1, whose results the
    once-only bitmap then dropped, silently, until the old count was passed (125 s of a demo camera)."""
    from fervi.bus import seq_key
    from fervi.protocol import Frame

    bus = Bus(client)
    bus.ensure_group("porch")
    seqs = [bus.add_frame(Frame("porch", time.time(), 8, 8, b"\xff\xd8", live=True))[0] for _ in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    client.delete(seq_key("porch"))
    assert bus.add_frame(Frame("porch", time.time(), 8, 8, b"\xff\xd8", live=True))[0] == 6
    client.delete("fervi:{porch}:frames", seq_key("porch"))  # frames gone too: the results stream remembers
    client.xadd("fervi:{porch}:results", {"seq": "41"})
    assert bus.add_frame(Frame("porch", time.time(), 8, 8, b"\xff\xd8", live=True))[0] == 42


def test_ingest_waits_out_a_spoilt_stream_key(tmp_path, redis_url, processes):
    """Found by the re-check: a camera's frames key replaced by a string made ingest crash-loop (WRONGTYPE)."""
    from fervi.bus import frames_key

    client = redis.Redis.from_url(redis_url)
    client.set(frames_key("spoilt"), "x")
    video = write_video(tmp_path / "ten.mp4", frames=10, fps=10)
    ingest = processes.start(["ingest", str(video), "--camera", "spoilt"], fervi_env(redis_url), "ingest")
    wait_for(lambda: "bad_redis_value" in ingest.log_path.read_text(), 60, "ingest to notice the spoilt key")
    time.sleep(1.0)
    assert ingest.poll() is None  # waiting, as for Redis away: file mode promises every frame
    client.delete(frames_key("spoilt"))
    assert ingest.wait(60) == 0, ingest.log_path.read_text()[-2000:]
    assert client.xlen(frames_key("spoilt")) == 10 and "Traceback" not in ingest.log_path.read_text()
