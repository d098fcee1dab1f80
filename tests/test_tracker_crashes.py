"""A tracker killed (-9) mid-file, or whose writes Redis refuses for a while (OOM), goes on from its last commit:
one tracks entry per frame, in seq order, and the statistics of an uninterrupted run (`fervi.bench.tracker_crashes`
writes the frames' results as two workers would, so the run stays short)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time

import numpy as np
import pytest
import redis
from fervi.bench.tracker_crashes import FPS, TRACKER_ENV, Feeder, camera_on_shard, frame_faces, run, tracks_written
from fervi.tracker.service import SNAPSHOT_VERSION, CameraState

from fervi.bus import Bus
from fervi.embedded import free_port
from fervi.emotions import EMOTIONS
from fervi.settings import load_settings
from fervi.tracking import FaceTracker, ReorderBuffer

from .conftest import fervi_env, health_json, wait_for


def test_a_tracker_killed_three_times_writes_each_frame_once_and_counts_like_one_never_killed(redis_url, tmp_path):
    frames = 1800
    out = run(redis_url, frames, kills=3, log_dir=tmp_path)
    killed, steady = out["killed"], out["steady"]
    restarts = sorted(tmp_path.glob("tracker0-*.log"))
    assert len(restarts) == 4, restarts  # started, then killed three times and started again
    assert killed["entries"] == killed["distinct_seqs"] == frames, killed
    assert killed["order_inversions"] == 0
    assert killed["open_tracks"] == 0 and steady["open_tracks"] == 0  # the camera went quiet: every track ended
    assert killed["tracks"] == steady["tracks"] == 3  # two faces; one left for 1.5 s and came back
    assert killed["track_seconds"] == pytest.approx(steady["track_seconds"], abs=1e-3)
    for emotion in EMOTIONS:
        assert killed["face_seconds"][emotion] == pytest.approx(steady["face_seconds"][emotion], abs=1e-3), emotion
    assert killed["observed_s"] == pytest.approx(steady["observed_s"], abs=1e-3)
    assert Bus(redis.Redis.from_url(redis_url)).stats(camera_on_shard("crash", 0)).get("late", 0) == 0


def face_seconds_of_one_run(frames: int, t0: float) -> np.ndarray:
    """Face-seconds per emotion of the frames tracked once each, in seq order, by the tracker's core."""
    tracker = FaceTracker.from_settings(load_settings())
    return sum((tracker.update(i, t0 + i / FPS, frame_faces(i)).emotion_seconds for i in range(frames)), np.zeros(7))


def test_writes_refused_for_a_while_lose_and_repeat_nothing(restartable_redis, processes):
    """Redis at its maxmemory (noeviction) while the tracker has a backlog: every commit is refused whole
    (MULTI/EXEC), /healthz says why, and once memory is raised the tracker goes on by itself."""
    frames, port = 900, free_port()
    client = redis.Redis.from_url(restartable_redis.url)
    bus, camera = Bus(client), "oom"
    t0 = float(int(time.time()) - frames / FPS - 30)
    feeder = Feeder(bus, camera, frames, t0)
    tracker = processes.start(
        ["tracker"], fervi_env(restartable_redis.url, **TRACKER_ENV, FERVI_METRICS_PORT=str(port)), "tracker"
    )
    feeder.feed(300)
    wait_for(lambda: tracks_written(bus, camera) >= 100, 60, "the first tracks entries")
    os.kill(tracker.pid, signal.SIGSTOP)  # a backlog builds while the tracker is away
    feeder.feed(frames)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)  # every write refused: OOM
    os.kill(tracker.pid, signal.SIGCONT)
    refusing = wait_for(
        lambda: "OOM" in health_json(port).get("redis", "") and health_json(port), 30, "the refusal in /healthz"
    )
    assert refusing["ok"] is False and refusing["redis"].startswith("refusing writes: OOM"), refusing
    before = tracks_written(bus, camera)
    time.sleep(1.0)  # the tracker retries meanwhile; nothing of a refused batch is written
    assert tracks_written(bus, camera) == before < frames
    client.config_set("maxmemory", 0)
    wait_for(lambda: tracks_written(bus, camera) >= frames, 60, "every frame's tracks entry")
    time.sleep(0.5)  # a repeat would come now
    wait_for(lambda: health_json(port).get("ok"), 30, "the tracker healthy again")
    seqs = [entry.seq for _, entry in bus.track_entries(camera)]
    assert len(seqs) == frames and seqs == sorted(set(seqs)), (len(seqs), len(set(seqs)))
    series = bus.emotion_series(camera, "1s", t0 - 2, t0 + frames / FPS + 2)
    want = face_seconds_of_one_run(frames, t0)
    for emotion, seconds in zip(EMOTIONS, want, strict=True):
        assert sum(series[emotion]) == pytest.approx(seconds, abs=0.02), emotion
    assert "event=reconnected" in tracker.log_path.read_text()
    assert tracker.poll() is None


def test_a_tracker_restored_from_its_snapshot_goes_on_exactly_as_one_never_stopped():
    """The pure core of the above: state -> JSON -> a new FaceTracker, half way through (open tracks, smoothing,
    face-time), gives the same frames as one tracker that ran through."""

    def frame(tracker: FaceTracker, i: int) -> tuple:
        out = tracker.update(i, i / FPS, frame_faces(i))
        return out.faces.track_ids.tolist(), out.faces.smoothed.tolist(), out.emotion_seconds.tolist(), out.duration

    through = FaceTracker(confirm_s=0.25)
    want = [frame(through, i) for i in range(900)]
    ids = itertools.count(1)  # ids come from Redis, shared by the tracker and the one after it
    first = CameraState(FaceTracker(confirm_s=0.25, next_id=ids.__next__), ReorderBuffer(), "5-0")
    got = [frame(first.tracker, i) for i in range(450)]
    first.buffer.next_seq = 450
    snapshot = first.commit().snapshot
    assert json.loads(snapshot)["v"] == SNAPSHOT_VERSION and len(snapshot) < 2000  # small
    resumed = CameraState(FaceTracker(confirm_s=0.25, next_id=ids.__next__), ReorderBuffer(), "5-0")
    resumed.restore(snapshot)
    assert resumed.buffer.next_seq == 450 and resumed.replay_to == "5-0"
    got += [frame(resumed.tracker, i) for i in range(450, 900)]
    assert got == want
    for bad in ("{", json.dumps({**json.loads(snapshot), "v": SNAPSHOT_VERSION + 1}), '{"v": 1, "tracks": 3}'):
        fresh = CameraState(FaceTracker(), ReorderBuffer(), "0-0")
        with pytest.raises(ValueError):
            fresh.restore(bad)
        assert fresh.tracker.tracks == [] and fresh.buffer.next_seq is None  # nothing taken from it


def test_results_read_again_after_a_restart_are_not_tracked_or_counted_twice():
    buffer: ReorderBuffer[str] = ReorderBuffer(window=4, max_wait_s=60)
    buffer.next_seq = 10  # restored: seqs before 10 were tracked by the tracker before this one
    assert buffer.push(8, "eight", replayed=True) == [] and buffer.late == 0
    assert buffer.push(11, "eleven", replayed=True) == []  # not yet tracked: held, as it was before the crash
    assert buffer.push(10, "ten") == [(10, "ten"), (11, "eleven")]
    assert buffer.push(9, "nine") == [] and buffer.late == 1  # a new arrival after its turn: late, as ever
