"""Live cameras stay bounded, many cameras share the workers, and a password in the Redis URL works."""

from __future__ import annotations

import time

import redis
from fervi.ingest.diagnose import INGEST_EXIT_UNUSABLE

from fervi.bus import Bus, frames_key
from fervi.demo import write_video
from fervi.embedded import EmbeddedRedis

from .conftest import fervi_env, wait_for
from .test_pipeline_e2e import results_by_index


def test_live_stream_stays_bounded_without_workers(tmp_path, redis_url, processes, client):
    video = write_video(tmp_path / "live.mp4", frames=30, fps=30)
    env = fervi_env(redis_url, FERVI_LIVE_MAXLEN="20")
    ingest = processes.start(
        ["ingest", str(video), "--camera", "live1", "--live", "--loop", "--fps", "200"], env, "ingest"
    )
    wait_for(
        lambda: client.get("fervi:{live1}:seq") and int(client.get("fervi:{live1}:seq")) > 150, 60, "150 live frames"
    )
    assert ingest.poll() is None  # capture never blocked on the missing workers
    assert client.xlen(frames_key("live1")) <= 20 + 100  # MAXLEN ~ trims in whole macro-nodes (100 entries)


def test_two_cameras_share_two_workers(tmp_path, redis_url, processes):
    env = fervi_env(redis_url, FERVI_BLOCK_MS="200")
    for i in range(2):
        processes.start(["worker"], env, f"worker{i}")
    counts = {"cam-a": 20, "cam-b": 25}
    ingests = [
        processes.start(["ingest", str(write_video(tmp_path / f"{c}.mp4", frames=n, fps=10)), "--camera", c], env, c)
        for c, n in counts.items()
    ]
    assert all(p.wait(120) == 0 for p in ingests)
    bus = Bus(redis.Redis.from_url(redis_url))
    for camera, frames in counts.items():
        done = wait_for(
            lambda camera=camera, frames=frames: (
                len(results_by_index(bus, camera)) == frames and results_by_index(bus, camera)
            ),
            120,
            f"every frame of {camera}",
        )
        assert sorted(done) == list(range(frames))


def test_password_in_the_redis_url(tmp_path, processes):
    with EmbeddedRedis(tmp_path / "pw", password="s3cret-pw") as server:
        assert "s3cret-pw" in server.url
        try:
            redis.Redis(port=server.port).ping()
            raise AssertionError("the server should refuse clients without the password")
        except redis.AuthenticationError:
            pass
        video = write_video(tmp_path / "pw.mp4", frames=5, fps=10)
        env = fervi_env(server.url)
        processes.start(["worker"], env, "worker")
        assert processes.start(["ingest", str(video), "--camera", "pw"], env, "ingest").wait(60) == 0
        bus = Bus(redis.Redis.from_url(server.url))
        wait_for(lambda: len(results_by_index(bus, "pw")) == 5, 60, "results with a password")
        processes.stop_all()
        time.sleep(0.2)


def test_ingest_refuses_missing_sources_and_bad_camera_names(tmp_path, redis_url, processes):
    env = fervi_env(redis_url)
    missing = processes.start(["ingest", str(tmp_path / "nope.mp4"), "--camera", "x"], env, "missing")
    assert missing.wait(30) == 2
    assert "no such file" in missing.log_path.read_text()
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    bad = processes.start(["ingest", str(text), "--camera", "y"], env, "bad")
    assert bad.wait(30) == INGEST_EXIT_UNUSABLE  # not a video: the supervisor will not start it again
    assert "source_failed" in bad.log_path.read_text() and "not a video" in bad.log_path.read_text()
    name = processes.start(["ingest", str(text), "--camera", "../etc"], env, "name")
    assert name.wait(30) == 2
    assert "invalid camera name" in name.log_path.read_text()


def test_a_paced_file_stamps_frames_when_it_releases_them(redis_url, client):
    """A file played as a live camera at --fps N reads ahead and waits; its frames' capture time is the
    moment they are released, so latency figures do not count the pacing wait."""
    import numpy as np
    from fervi.ingest.publisher import Publisher
    from fervi.ingest.sources import Buffering, Captured

    from fervi.protocol import Frame
    from fervi.settings import load_settings

    class FastFile:
        buffering = Buffering.WAIT

        def frames(self):
            for i in range(6):
                yield Captured(i, np.zeros((48, 64, 3), np.uint8), time.time())

    publisher = Publisher(load_settings(), redis_url, "paced", "fast-file", fps=5.0, live=True)
    publisher._play(FastFile())
    entries = client.xrange(frames_key("paced"))
    assert len(entries) == 6
    for entry_id, fields in entries:
        added_ms = int(entry_id.split(b"-")[0])
        assert abs(Frame.from_fields(fields).captured_at * 1000 - added_ms) < 50
