"""Tracker core on synthetic result sequences: stable ids, ends, seq order, smoothing, exact aggregates."""

from __future__ import annotations

import time
from itertools import pairwise

import fakeredis
import numpy as np
import pytest

from fervi.bus import Bus
from fervi.emotions import EMOTIONS
from fervi.faces import Faces
from fervi.protocol import TrackEntry
from fervi.tracking import UNOBSERVED_KEEP_S, FaceTracker, ReorderBuffer, iou_matrix

HAPPY = np.eye(7, dtype=np.float32)[3]


def faces(*boxes, probs=None) -> Faces:
    n = len(boxes)
    p = np.tile(HAPPY, (n, 1)) if probs is None else np.asarray(probs, np.float32).reshape(n, 7)
    return Faces(np.array(boxes, np.float32).reshape(-1, 4), np.ones(n, np.float32), p)


def test_iou():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 10, 10], [20, 20, 5, 5]], np.float32)
    assert np.allclose(iou_matrix(a, b), [[50 / 150, 0]])


def test_two_faces_crossing_paths_keep_their_ids():
    tracker = FaceTracker()
    ids = []
    for i in range(40):
        a = (10 + 10 * i, 100, 100, 100)  # moving right
        b = (410 - 10 * i, 160, 100, 100)  # moving left, passing over a
        frame = tracker.update(i, i / 10, faces(a, b))
        ids.append(frame.faces.track_ids.tolist())
    assert all(pair == ids[0] for pair in ids)
    assert len(set(ids[0])) == 2


def test_occlusion_within_the_hold_keeps_the_id_and_a_longer_one_ends_it():
    tracker = FaceTracker(hold_s=0.5)
    box = (100, 100, 80, 80)
    first = tracker.update(0, 0.0, faces(box)).faces.track_ids[0]
    for i in range(1, 5):  # hidden for 0.4 s
        assert tracker.update(i, i / 10, faces()).ended == []
    assert tracker.update(5, 0.5, faces(box)).faces.track_ids[0] == first
    ended = []
    for i in range(6, 12):  # hidden for 0.6 s: past the hold
        ended += tracker.update(i, i / 10, faces()).ended
    assert [t.id for t in ended] == [first]
    assert tracker.update(12, 1.2, faces(box)).faces.track_ids[0] != first


@pytest.mark.parametrize("step_s", [1.2, 2.5])
def test_a_face_in_every_processed_frame_keeps_its_track_however_far_apart_the_frames(step_s):
    """Under overload a camera's processed frames can be further apart than the hold (1.2 s at 2% of 60 fps):
    a face seen in each of them is one track (a new user saw one still face become 5 tracks, two faces 37).
    Missed in two processed frames past the hold, it ends; after UNOBSERVED_KEEP_S with no frame at all, too."""
    tracker = FaceTracker(hold_s=1.0)
    box = (100, 100, 80, 80)
    ids = {tracker.update(seq, seq * step_s, faces(box)).faces.track_ids[0] for seq in range(20)}
    assert len(ids) == 1
    ended = []
    for seq in range(20, 23):  # the face gone: two processed frames without it end its track (at the third)
        ended += tracker.update(seq, seq * step_s, faces()).ended
    assert [t.id for t in ended] == list(ids)
    again = tracker.update(23, 23 * step_s, faces(box)).faces.track_ids[0]
    assert tracker.update(24, 23 * step_s + UNOBSERVED_KEEP_S - 1, faces(box)).faces.track_ids[0] == again
    assert tracker.update(25, 23 * step_s + 2 * UNOBSERVED_KEEP_S, faces(box)).faces.track_ids[0] != again


def test_walking_faces_keep_their_ids_when_processed_frames_are_far_apart():
    """Under overload a camera's processed frames come about a second apart: two faces walking side by side
    move more than their box between them (a new user saw the demo's two faces become 50 tracks in 5 min).
    Each keeps its own id; at close frames nothing changes."""
    for step_s, moved in ((1.0, 120.0), (0.1, 12.0)):  # the same walk: 120 px a second, faces 80 px wide
        tracker = FaceTracker(hold_s=1.0)
        ids = set()
        for seq in range(12):
            x = 40 + seq * moved
            frame = tracker.update(seq, seq * step_s, faces((x, 100, 80, 80), (x, 300, 80, 80)))
            ids.add(tuple(frame.faces.track_ids))
        assert len(ids) == 1 and len(next(iter(ids))) == 2, (step_s, ids)


def test_a_camera_that_stops_ends_its_tracks():
    tracker = FaceTracker()
    tracker.update(0, 0.0, faces((0, 0, 50, 50), (200, 0, 50, 50)))
    ended = tracker.finish()
    assert len(ended) == 2 and tracker.tracks == []


def test_reorder_buffer_restores_seq_order_and_counts_late_results():
    buffer = ReorderBuffer(window=3, max_wait_s=60)
    out = []
    for seq in [0, 2, 1, 3, 5, 4]:
        out += [s for s, _ in buffer.push(seq, seq)]
    assert out == [0, 1, 2, 3, 4, 5]
    # seq 6 never comes (a skipped live frame): given up on once the window is full
    for seq in [7, 8, 9, 10]:
        out += [s for s, _ in buffer.push(seq, seq)]
    assert out[-4:] == [7, 8, 9, 10] and buffer.gaps == 1
    assert buffer.push(6, 6) == [] and buffer.late == 1
    assert buffer.push(12, 12) == [] and [s for s, _ in buffer.flush()] == [12]


def test_a_missing_seq_is_waited_for_at_most_max_wait():
    now = [0.0]
    buffer = ReorderBuffer(window=100, max_wait_s=0.5, clock=lambda: now[0])
    assert [s for s, _ in buffer.push(0, 0)] == []  # the first seq waits too: an earlier one may come
    now[0] = 0.6
    assert [s for s, _ in buffer.due()] == [0]
    assert [s for s, _ in buffer.push(2, 2)] == []  # seq 1 skipped by the workers
    now[0] = 0.9
    assert buffer.due() == []
    assert buffer.wait_s() == pytest.approx(0.2)  # the tracker blocks on Redis no longer than this
    now[0] = 1.2
    assert buffer.wait_s() == 0.0
    assert [s for s, _ in buffer.due()] == [2] and buffer.gaps == 1
    assert buffer.wait_s() is None


def test_out_of_order_frames_track_like_in_order_ones():
    rng = np.random.default_rng(0)
    order = np.arange(30)
    for start in range(0, 30, 4):
        rng.shuffle(order[start : start + 4])
    buffer, tracker, ids = ReorderBuffer(window=8, max_wait_s=60), FaceTracker(), []
    for seq in order:
        for s, box in buffer.push(int(seq), (10 + 5 * int(seq), 50, 80, 80)):
            ids.append(tracker.update(s, s / 10, faces(box)).faces.track_ids[0])
    ids += [tracker.update(s, s / 10, faces(b)).faces.track_ids[0] for s, b in buffer.flush()]
    assert len(ids) == 30 and set(ids) == {ids[0]}


def _flips(labels: list[int]) -> int:
    return sum(a != b for a, b in pairwise(labels))


def test_smoothing_flickers_far_less_than_raw_labels():
    rng = np.random.default_rng(1)
    tracker = FaceTracker(half_life_s=0.5)
    raw, smooth = [], []
    for i in range(300):  # a face that is mostly neutral, with noisy sad/neutral scores at 30 fps
        p = np.full(7, 0.02, np.float32)
        p[6], p[4] = 0.45 + rng.normal(0, 0.12), 0.40 + rng.normal(0, 0.12)
        p = np.clip(p, 0.001, None)
        p /= p.sum()
        face = tracker.update(i, i / 30, faces((100, 100, 80, 80), probs=p)).faces
        raw.append(int(face.probs[0].argmax()))
        smooth.append(int(face.smoothed[0].argmax()))
    assert _flips(raw) >= 60
    assert _flips(smooth) * 10 <= _flips(raw), (_flips(smooth), _flips(raw))
    assert EMOTIONS[max(set(smooth), key=smooth.count)] == "neutral"


def test_aggregates_add_up_to_the_exact_face_seconds():
    bus = Bus(fakeredis.FakeRedis())
    tracker = FaceTracker()
    rng = np.random.default_rng(2)
    t0 = float(int(time.time()) - 1000)
    expected = {e: 0.0 for e in EMOTIONS}
    ts = t0
    for i in range(200):
        ts += float(rng.uniform(0.02, 0.3))
        n = int(rng.integers(0, 3))
        boxes = [(50 + 200 * k, 50, 80, 80) for k in range(n)]
        probs = np.eye(7, dtype=np.float32)[[(i // 50 + k) % 7 for k in range(n)]]
        frame = tracker.update(i, ts, faces(*boxes, probs=probs) if n else faces())
        for smoothed in frame.faces.smoothed:  # face-time by probability mass
            for emotion, p in zip(EMOTIONS, smoothed, strict=True):
                expected[emotion] += float(p) * frame.duration
        bus.publish_tracks("cam", [(TrackEntry("cam", i, i, ts, ts, 640, 480, frame.faces), frame)], 1000)
    seconds = bus.emotion_series("cam", "1s", t0, ts + 1)
    minutes = bus.emotion_totals("cam", "1m", t0, ts + 60)
    for emotion in EMOTIONS:
        assert abs(sum(seconds[emotion]) - expected[emotion]) < 1e-2
        assert abs(minutes[emotion] - expected[emotion]) < 1e-2
    assert sum(expected.values()) > 10
    assert bus.active_faces("cam") == n
    tracks = bus.tracks("cam")
    assert tracks and all(t["dominant"] in EMOTIONS for t in tracks)


@pytest.mark.parametrize("step_s", [0.1, 0.35, 0.9])
def test_a_flicker_is_no_track_and_adds_no_face_time_at_any_processed_rate(step_s):
    """Under load one processed frame stands for up to the hold (0.9 s at ~1 frame/s): a face in one frame
    alone, a detector's flicker, is still no track and adds no face-seconds; a face seen in later frames counts,
    with all its face-time from its first frame (credited when it is confirmed)."""
    tracker = FaceTracker(confirm_s=0.25)
    frames = [tracker.update(0, 1000.0, faces())]
    frames.append(tracker.update(1, 1000.0 + step_s, faces((50, 50, 80, 80))))  # a flicker, one frame
    frames.append(tracker.update(2, 1000.0 + 2 * step_s, faces((400, 50, 80, 80))))  # a face elsewhere, from here on
    assert not frames[-1].started and all(not f.emotion_seconds.any() for f in frames)
    for seq in range(3, 10):
        frames.append(tracker.update(seq, 1000.0 + seq * step_s, faces((400, 50, 80, 80))))
    started = [t for f in frames for t in f.started]
    assert len(started) == 1 and started[0].frames == 8  # the face, not the flicker
    credited = sum(float(f.emotion_seconds.sum()) for f in frames)
    assert credited == pytest.approx(8 * step_s) == pytest.approx(float(started[0].emotion_seconds.sum()))
    assert [t.id for t in tracker.finish()] == [started[0].id]


@pytest.mark.parametrize("fps, half_life", [(30.0, 0.5), (15.0, 0.5), (10.0, 1.0)])
def test_smoothing_never_hides_a_real_change_longer_than_its_half_life(fps, half_life):
    """A face that turns from neutral to angry and stays: the smoothed label follows within the half-life."""
    neutral, angry = np.eye(7, dtype=np.float32)[6], np.eye(7, dtype=np.float32)[0]
    tracker = FaceTracker(half_life_s=half_life)
    change_at = 2.0
    followed_at = None
    for i in range(int(4 * fps)):
        ts = i / fps
        frame = tracker.update(i, ts, faces((100, 100, 80, 80), probs=[angry if ts >= change_at else neutral]))
        if ts < change_at:
            assert frame.faces.labels[0] == "neutral"
        elif followed_at is None and frame.faces.labels[0] == "angry":
            followed_at = ts
    assert followed_at is not None and followed_at - change_at <= half_life + 1e-9


def test_a_seq_whose_frame_is_still_with_the_workers_is_waited_for():
    """A dead worker's frame is reclaimed after the claim timeout (15 s), long after the reorder wait (0.5 s):
    while the frame is in flight its seq is not given up on, whatever the window and quiet time say."""
    now, asked = [0.0], []
    in_flight = {3}

    def still_coming(seq):
        asked.append(seq)
        return seq in in_flight

    buffer = ReorderBuffer(window=4, max_wait_s=0.5, clock=lambda: now[0], in_flight=still_coming, max_hold_s=30)
    out = [s for seq in (0, 1, 2) for s, _ in buffer.push(seq, seq)]
    now[0] = 1.0
    out += [s for s, _ in buffer.due()]
    for seq in range(4, 20):  # seq 3 is pending on a killed worker; the others go on
        now[0] += 0.1
        out += [s for s, _ in buffer.push(seq, seq)]
    out += [s for s, _ in buffer.flush()]  # the camera went quiet
    assert out == [0, 1, 2] and len(buffer.pending) == 16
    assert 0 < buffer.wait_s() <= ReorderBuffer.RECHECK_S  # the tracker asks again soon, without busy-looping
    calls = len(asked)
    buffer.due()
    assert len(asked) == calls  # not asked again before the recheck time
    now[0] += 10  # reclaimed at last
    out += [s for s, _ in buffer.push(3, 3)]
    assert out == list(range(20)) and buffer.gaps == 0 and buffer.late == 0
    # a seq whose frame is gone (a trimmed live frame) is given up on after the reorder wait
    in_flight.clear()
    buffer.push(21, 21)
    now[0] += 1
    assert [s for s, _ in buffer.due()] == [21] and buffer.gaps == 1


def test_a_seq_in_flight_is_given_up_on_after_max_hold():
    now = [0.0]
    buffer = ReorderBuffer(window=2, max_wait_s=0.5, clock=lambda: now[0], in_flight=lambda seq: seq == 1, max_hold_s=5)
    buffer.push(0, 0)
    now[0] = 1
    buffer.due()
    buffer.push(2, 2)
    now[0] = 3
    assert buffer.due() == []
    now[0] = 6.1
    assert [s for s, _ in buffer.due()] == [2] and buffer.gaps == 1


def test_the_first_frames_held_by_a_dead_worker_are_waited_for():
    """The tracker starts at the lowest seq it has seen, unless an earlier frame is still with the workers."""
    now, in_flight = [0.0], {1, 2}
    buffer = ReorderBuffer(
        window=3, max_wait_s=0.5, clock=lambda: now[0], in_flight=lambda seq: any(s <= seq for s in in_flight)
    )
    out = [s for seq in range(3, 9) for s, _ in buffer.push(seq, seq)]
    now[0] = 2
    out += [s for s, _ in buffer.flush()]
    assert out == []
    now[0] = 3
    for seq in (1, 2):  # reclaimed: each frame leaves the stream as its result is written
        in_flight.discard(seq)
        out += [s for s, _ in buffer.push(seq, seq)]
    assert out == list(range(1, 9)) and buffer.late == 0 and buffer.gaps == 0


def test_a_seq_no_frame_ever_had_is_a_bad_entry_not_a_new_horizon():
    """One results entry with seq 10**12 made the tracker drop the next frames as late."""
    last = [10]
    buffer = ReorderBuffer(window=4, max_wait_s=60, last_seq=lambda: last[0])
    out = [s for seq in (0, 1) for s, _ in buffer.push(seq, seq)]
    assert buffer.push(10**12, "forged") == [] and buffer.bad == 1
    last[0] = 20
    out += [s for seq in range(2, 15) for s, _ in buffer.push(seq, seq)]
    out += [s for s, _ in buffer.flush()]
    assert out == list(range(15)) and buffer.late == 0


def test_the_looping_demo_camera_keeps_its_track_ids():
    """Found by a new user: on `fervi up`'s looping demo the track ids climbed (#66 after 8 minutes), as the
    faces jumped back to the start at every loop. The demo clip glides there and back: two loops, two ids."""
    from fervi.demo import render_frame
    from fervi.settings import load_settings
    from fervi.vision.pipeline import FacePipeline

    settings = load_settings({})
    pipeline = FacePipeline.from_settings(settings)
    tracker = FaceTracker(settings.track_iou, settings.track_hold_s, settings.track_half_life_s)
    frames, fps, ids = 40, 10.0, set()
    for i in range(2 * frames):
        faces = pipeline.analyze([render_frame(i % frames, frames, seamless=True)])[0]
        ids.update(tracker.update(i, i / fps, faces).faces.track_ids.tolist())
    assert len(ids) == 2, ids
