"""The tracker on the real pipeline: a video of two real faces moving across the frame -> two tracks."""

from __future__ import annotations

from itertools import pairwise

import redis

from fervi.bus import Bus, tracks_key
from fervi.demo import write_video
from fervi.emotions import EMOTIONS
from fervi.protocol import TrackEntry

from .conftest import fervi_env, wait_for

# A file has no skipped frames: let the reorder window wait for slow workers rather than give up on a seq.
FAST = {"FERVI_CLAIM_TIMEOUT": "2", "FERVI_BLOCK_MS": "200", "FERVI_REORDER_WAIT": "10"}


def test_one_track_per_face_for_the_whole_video(tmp_path, redis_url, processes):
    frames = 45
    video = write_video(tmp_path / "faces.mp4", frames=frames, fps=15)
    env = fervi_env(redis_url, **FAST)
    processes.start(["worker"], env, "worker1")
    processes.start(["worker"], env, "worker2")  # two workers finish frames out of order
    tracker = processes.start(["tracker"], env, "tracker")
    ingest = processes.start(["ingest", str(video), "--camera", "walk"], env, "ingest")
    assert ingest.wait(120) == 0
    client = redis.Redis.from_url(redis_url)
    wait_for(lambda: client.xlen(tracks_key("walk")) >= frames, 120, "a tracks entry per frame")
    entries = [TrackEntry.from_fields(f) for _, f in client.xrange(tracks_key("walk"))]
    assert [e.index for e in entries] == list(range(frames))  # in seq order, none lost, none twice
    ids = {track_id for e in entries for track_id in e.faces.track_ids.tolist()}
    assert len(ids) == 2, ids
    per_frame = [len(e.faces) for e in entries]
    assert sum(n == 2 for n in per_frame) >= frames * 0.9
    for entry in entries:
        for smoothed, label in zip(entry.faces.smoothed, entry.faces.labels, strict=True):
            assert abs(sum(smoothed) - 1) < 1e-2 and label in EMOTIONS
    # the statistics hold the video's face-time
    series = Bus(client).emotion_series("walk", "1s", entries[0].captured_at - 1, entries[-1].captured_at + 1)
    face_seconds = sum(sum(series[e]) for e in EMOTIONS)
    expected = sum(len(b.faces) * min(1.0, b.captured_at - a.captured_at) for a, b in pairwise(entries))
    assert abs(face_seconds - expected) < 0.05
    assert {t["id"] for t in Bus(client).tracks("walk")} == ids
    assert tracker.poll() is None
    assert Bus(client).stats("walk").get("late", 0) == 0


def test_frames_a_killed_worker_held_still_reach_the_tracks(tmp_path, redis_url, processes):
    """Reclaiming takes the claim timeout (here 3 s), far past the reorder wait (0.5 s): the tracker waits
    for seqs whose frames are still with the workers, so no frame is missing from the tracks or late."""
    import os
    import signal
    import time

    from fervi.bus import WORKER_GROUP, frames_key

    frames = 60
    video = write_video(tmp_path / "faces.mp4", frames=frames, fps=15)
    env = fervi_env(redis_url, FERVI_CLAIM_TIMEOUT="3", FERVI_BLOCK_MS="200", FERVI_REORDER_WAIT="0.5")
    client = redis.Redis.from_url(redis_url)
    victim = processes.start(["worker"], env, "victim")
    tracker = processes.start(["tracker"], env, "tracker")
    # paced, so the worker is caught holding frames mid-file, not after it finished them all
    ingest = processes.start(["ingest", str(video), "--camera", "held", "--fps", "15"], env, "ingest")

    def holding_frames() -> bool:
        os.kill(victim.pid, signal.SIGSTOP)
        try:
            pending = client.xpending(frames_key("held"), WORKER_GROUP)["pending"]
        except redis.ResponseError:  # the group is not there yet
            pending = 0
        if pending:
            return True
        os.kill(victim.pid, signal.SIGCONT)
        time.sleep(0.02)
        return False

    wait_for(holding_frames, 120, "the worker holding frames mid-file", interval_s=0.005)
    os.kill(victim.pid, signal.SIGKILL)
    processes.start(["worker"], env, "survivor")
    assert ingest.wait(120) == 0
    wait_for(lambda: client.xlen(tracks_key("held")) >= frames, 120, "a tracks entry per frame")
    entries = [TrackEntry.from_fields(f) for _, f in client.xrange(tracks_key("held"))]
    assert [e.index for e in entries] == list(range(frames))
    stats = Bus(client).stats("held")
    assert stats.get("late", 0) == 0
    assert tracker.poll() is None
    assert "event=reclaimed" in (tmp_path / "survivor.log").read_text()


def test_a_face_still_on_camera_has_a_current_track_record(tmp_path, redis_url, processes):
    """Found by a new user: a track's record was written when it started and when it ended, so the charts
    listed faces still on camera as seen for 1 s, and dropped them from the range after 5 minutes."""
    video = write_video(tmp_path / "long.mp4", frames=120, fps=10)
    env = fervi_env(redis_url, **FAST)
    processes.start(["worker"], env, "worker")
    processes.start(["tracker"], env, "tracker")
    client = redis.Redis.from_url(redis_url)
    ingest = processes.start(["ingest", str(video), "--camera", "hall", "--fps", "10"], env, "ingest")
    # while the faces are still on camera (12 s of video), their open records follow them
    tracks = wait_for(
        lambda: (
            [t for t in Bus(client).tracks("hall") if t["open"] and t["end"] - t["start"] >= 3.0 and t["frames"] >= 25]
            or None
        ),
        60,
        "open track records that follow the faces",
    )
    assert ingest.poll() is None, "the video ended before the open records were seen"
    assert len(tracks) == 2 and all(sum(t["seconds"].values()) >= 2.5 for t in tracks), tracks
    assert ingest.wait(120) == 0
