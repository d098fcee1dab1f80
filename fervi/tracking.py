"""Face tracks, pure and testable without Redis: stable ids, smoothed emotions, results in seq order.

- `ReorderBuffer` turns results that workers finish out of order back into seq order, waiting at most
  `window` frames for a missing seq (skipped and dead frames come as gap markers, so a seq goes missing only
  when a result is lost or slow); later arrivals are counted.
- `FaceTracker` matches faces to tracks by box overlap (or centre distance) with an optimal assignment
  (`scipy.optimize.linear_sum_assignment`), ends a track not seen for longer than `hold_s` seconds, and
  smooths each track's 7 probabilities with an exponential moving average whose half-life is in seconds.
  It also keeps the statistics of each track (face-seconds per emotion, the dominant emotion): live tracking
  and offline video analysis both use it, so both count the same way.

The face-time rule (docs/architecture.md, "Face-time"), the same whatever share of a camera's frames is
processed: each processed frame stands for the time since the camera's previous processed frame, up to
`hold_s` (its `duration`); a face in it adds that time to its track, shared among the emotions by the track's
smoothed (calibrated) probabilities (probability mass: an uncertain face adds to both of its leading
emotions). A longer gap (a restart, a starved stretch) is bridged for `hold_s` only: the rest is the frame's
`unobserved` time, counted apart as "not observed", never as "no face". Tracks end by time too, so the
number of tracks does not depend on the processed frame rate either, nor does a track's confirmation: a
face becomes a track of the statistics (a record, a count) once its face-time reaches `confirm_s` (or it
was seen in CONFIRM_FRAMES frames), so a detection that flickers for a moment counts as no one at any frame
rate (its face still gets an id and its face-time). Offline analysis of every n-th frame
gives each analysed frame n frames of video time (`frame_step_s`), which is this rule on evenly spaced frames.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
from scipy.optimize import linear_sum_assignment

from .emotions import EMOTIONS, NUM_EMOTIONS
from .faces import Faces
from .settings import Settings

T = TypeVar("T")  # what a ReorderBuffer holds

HOLD_S = 1.0  # default: the longest gap a frame bridges in face-seconds, and how long an unseen track lives
# a track seen in this many frames counts whatever its face-time: a file ingested faster than real time
# (its frames' capture times are when they were read) has frames a few ms apart. At 40 fps and below, the
# face-time of `confirm_s` comes first, so live cameras confirm by time alone.
CONFIRM_FRAMES = 10
# and a face seen in one processed frame alone is never a track, whatever time that frame stands for: under
# load (3 processed frames a second) one frame stands for 0.33 s, past `confirm_s`, and a detector's one-frame
# flicker would count as a face
MIN_CONFIRM_FRAMES = 2
# A track ends once unseen for longer than the hold AND in END_MISSES processed frames: under overload the
# processed frames of a camera can be further apart than the hold (1.2 s at 2% of 60 fps), and a face seen
# in every one of them is one face, not a new track each frame. Unseen for longer than UNOBSERVED_KEEP_S
# (nothing processed: a restart, workers stopped), it ends whatever the frames.
END_MISSES = 2
UNOBSERVED_KEEP_S = 10.0


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every xywh box in `a` (N, 4) with every box in `b` (M, 4)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    ax1, ay1, ax2, ay2 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx1, by1, bx2, by2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None) * np.clip(
        np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None
    )
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    iou: np.ndarray = inter / np.maximum(union, 1e-9)  # numpy's stubs type np.clip(..., None) as Any
    return iou


def similarity_matrix(a: np.ndarray, b: np.ndarray, reach: np.ndarray | None = None) -> np.ndarray:
    """How alike track boxes `a` and face boxes `b` are: their IoU, or, for a face that moved further than
    its box overlaps (low fps, every k-th frame), 1 - centre distance / (face size x the track's `reach`),
    whichever is larger. `reach` (one per track, default 1): how far, in face sizes, its face may have moved
    since it was last seen (`motion_reach`)."""
    overlap = iou_matrix(a, b)
    if overlap.size == 0:
        return overlap
    ca = a[:, None, :2] + a[:, None, 2:] / 2
    cb = b[None, :, :2] + b[None, :, 2:] / 2
    distance = np.linalg.norm(ca - cb, axis=2)
    size = np.maximum(np.sqrt(a[:, None, 2] * a[:, None, 3]), np.sqrt(b[None, :, 2] * b[None, :, 3]))
    if reach is not None:
        size = size * np.asarray(reach, np.float64).reshape(-1, 1)
    similarity: np.ndarray = np.maximum(overlap, 1.0 - distance / np.maximum(size, 1e-9))  # linalg.norm: Any in stubs
    return similarity


MOTION_REF_S = 0.5  # a face unseen this long may have moved one face size more than between close frames
MOTION_REACH_MAX = 4.0


def motion_reach(unseen_s: float) -> float:
    """How far (in face sizes, relative to close frames) a face may have moved in `unseen_s`: under overload a
    camera's processed frames are far apart and a walking face moves further between them than its box."""
    return min(MOTION_REACH_MAX, 1.0 + max(0.0, unseen_s) / MOTION_REF_S)


@dataclass
class Track:
    id: int
    box: np.ndarray
    smoothed: np.ndarray
    started_at: float
    last_seen: float
    misses: int = 0
    frames: int = 1
    emotion_seconds: np.ndarray = field(default_factory=lambda: np.zeros(NUM_EMOTIONS))
    confirmed: bool = False  # seen long enough to count (`FaceTracker.confirm_s`)

    @property
    def label(self) -> str:
        return EMOTIONS[int(self.smoothed.argmax())]

    def to_state(self) -> dict[str, Any]:
        """Everything the track's future depends on, as JSON numbers (a float's repr reads back exactly)."""
        return {
            "id": self.id,
            "box": self.box.astype(float).tolist(),
            "smoothed": self.smoothed.astype(float).tolist(),
            "started_at": self.started_at,
            "last_seen": self.last_seen,
            "misses": self.misses,
            "frames": self.frames,
            "emotion_seconds": self.emotion_seconds.astype(float).tolist(),
            "confirmed": self.confirmed,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Track:
        """The track `to_state` described; KeyError, TypeError or ValueError for a state it did not write."""
        track = cls(
            int(state["id"]),
            np.asarray(state["box"], np.float32).reshape(4),
            np.asarray(state["smoothed"], np.float64).reshape(NUM_EMOTIONS),
            float(state["started_at"]),
            float(state["last_seen"]),
            int(state["misses"]),
            int(state["frames"]),
            np.asarray(state["emotion_seconds"], np.float64).reshape(NUM_EMOTIONS),
            bool(state["confirmed"]),
        )
        if not all(np.isfinite(v).all() for v in (track.box, track.smoothed, track.emotion_seconds)):
            raise ValueError(f"track {track.id}: a number that is not finite")
        return track

    @property
    def dominant(self) -> str:
        """The emotion with the most face-time (probability mass); its current one before any time passed."""
        return EMOTIONS[int(self.emotion_seconds.argmax())] if self.emotion_seconds.any() else self.label


@dataclass
class FrameTracks:
    """What the tracker says of one frame: its faces with track ids, the time it stands for, tracks ended."""

    seq: int
    ts: float
    duration: float  # seconds this frame stands for in face-seconds
    faces: Faces  # tracked: track ids and smoothed probabilities
    started: list[Track]  # confirmed in this frame
    ended: list[Track]  # confirmed tracks that ended
    # face-seconds this frame adds per emotion (each face's smoothed probabilities x duration): what its tracks add
    emotion_seconds: np.ndarray = field(default_factory=lambda: np.zeros(NUM_EMOTIONS))
    unobserved: float = 0.0  # seconds before `ts - duration` that the camera was not observed (gap beyond the hold)


@dataclass(eq=False)
class FaceTracker:
    """`hold_s`: the longest gap between processed frames that face-time bridges, and how long a track lives
    unseen. `confirm_s`: the face-time after which a face counts as a track, in two frames at least (0: at once); its
    face-time counts from then, so a flicker adds none. `frame_step_s`: the
    time each frame stands for when frames come at a fixed step (a video analysed every n-th frame); by
    default the time since the previous frame, up to `hold_s`, as on a camera. `next_id`: where track ids
    come from (live: Redis, unique per camera; else 1, 2, 3...)."""

    iou_threshold: float = 0.3
    hold_s: float = HOLD_S
    half_life_s: float = 0.5
    next_id: Callable[[], int] | None = None
    frame_step_s: float | None = None
    confirm_s: float = 0.0
    tracks: list[Track] = field(default_factory=list)
    last_ts: float | None = None

    def __post_init__(self) -> None:
        self._next_id = self.next_id or itertools.count(1).__next__

    @classmethod
    def from_settings(
        cls, settings: Settings, next_id: Callable[[], int] | None = None, frame_step_s: float | None = None
    ) -> FaceTracker:
        """The tracker as the settings configure it (FERVI_TRACK_*): live tracking, offline analysis and the
        benchmarks all build it here."""
        return cls(
            settings.track_iou,
            settings.track_hold_s,
            settings.track_half_life_s,
            next_id=next_id,
            frame_step_s=frame_step_s,
            confirm_s=settings.track_confirm_s,
        )

    def _alpha(self, dt: float) -> float:
        """Weight of the new observation after dt seconds: 1 - 0.5 ** (dt / half_life)."""
        if self.half_life_s <= 0:
            return 1.0
        return float(1.0 - 0.5 ** (max(dt, 0.0) / self.half_life_s))

    def update(self, seq: int, ts: float, faces: Faces) -> FrameTracks:
        gap = 0.0 if self.last_ts is None else max(0.0, ts - self.last_ts)
        duration = self.frame_step_s if self.frame_step_s is not None else min(gap, self.hold_s)
        unobserved = 0.0 if self.frame_step_s is not None else gap - duration
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        # tracks unseen for longer than the hold, in END_MISSES processed frames, end before matching: by time,
        # the same at any frame rate, and never between two frames that both saw the face
        gone = [t for t in self.tracks if self._lost(t, ts)]
        self.tracks = [t for t in self.tracks if not self._lost(t, ts)]
        ended = [t for t in gone if t.confirmed]
        boxes = np.asarray(faces.boxes, np.float32).reshape(-1, 4)
        probs = np.asarray(faces.probs, np.float32).reshape(-1, NUM_EMOTIONS)
        track_boxes = np.array([t.box for t in self.tracks], np.float32).reshape(-1, 4)
        reach = np.array([motion_reach(ts - t.last_seen) for t in self.tracks])
        overlap = similarity_matrix(track_boxes, boxes, reach)
        pairs: list[tuple[int, int]] = []
        if overlap.size:
            rows, cols = linear_sum_assignment(-overlap)
            pairs = [(r, c) for r, c in zip(rows, cols, strict=True) if overlap[r, c] >= self.iou_threshold]
        matched_tracks = {r for r, _ in pairs}
        matched_faces = {c for _, c in pairs}
        assigned: dict[int, Track] = {}
        started: list[Track] = []
        for r, c in pairs:
            track = self.tracks[r]
            alpha = self._alpha(ts - track.last_seen)
            track.smoothed = (1 - alpha) * track.smoothed + alpha * probs[c]
            track.box = boxes[c]
            track.last_seen = max(track.last_seen, ts)
            track.misses = 0
            track.frames += 1
            assigned[c] = track
        for c in range(len(boxes)):
            if c not in matched_faces:
                track = Track(self._next_id(), boxes[c], probs[c].astype(np.float64), ts, ts)
                self.tracks.append(track)
                assigned[c] = track
        for i, track in enumerate(list(self.tracks)):
            if i < len(track_boxes) and i not in matched_tracks:
                track.misses += 1
        added = np.zeros(NUM_EMOTIONS)
        for track in assigned.values():
            # face-time by probability mass: each emotion gets its (calibrated, smoothed) probability of the
            # frame's time, so a face that is 55% happy and 45% neutral is not counted as all happy
            share = track.smoothed / max(float(track.smoothed.sum()), 1e-9) * duration
            track.emotion_seconds += share
            if track.confirmed:
                added += share
            elif self._long_enough(track):  # its face-time so far counts from now: a flicker's never does
                track.confirmed = True
                started.append(track)
                added += track.emotion_seconds
        ids = [assigned[c].id for c in range(len(boxes))]
        smoothed = np.array([assigned[c].smoothed for c in range(len(boxes))], np.float32).reshape(-1, NUM_EMOTIONS)
        return FrameTracks(seq, ts, duration, faces.tracked(ids, smoothed), started, ended, added, unobserved)

    def _lost(self, track: Track, ts: float) -> bool:
        unseen = ts - track.last_seen
        return unseen > self.hold_s and (track.misses >= END_MISSES or unseen > max(UNOBSERVED_KEEP_S, self.hold_s))

    def _long_enough(self, track: Track) -> bool:
        """Seen for `confirm_s` of face-time (the time its frames stand for): the same at any frame rate; or
        in CONFIRM_FRAMES frames."""
        if self.confirm_s <= 0 or track.frames >= CONFIRM_FRAMES:
            return True
        if track.frames < MIN_CONFIRM_FRAMES:
            return False
        return float(track.emotion_seconds.sum()) >= self.confirm_s - 1e-9

    def state(self) -> dict[str, Any]:
        """What the next frames' tracking depends on (open tracks, the last frame's time), as JSON values: a
        tracker restored from it (`restore`) goes on exactly as this one would."""
        return {"tracks": [t.to_state() for t in self.tracks], "last_ts": self.last_ts}

    def restore(self, state: dict[str, Any]) -> None:
        """Go on from `state()`; KeyError, TypeError or ValueError (nothing changed) for one it did not write."""
        tracks = [Track.from_state(t) for t in state["tracks"]]
        last_ts = state["last_ts"]
        self.tracks, self.last_ts = tracks, None if last_ts is None else float(last_ts)

    def finish(self) -> list[Track]:
        """End every open track (the camera stopped, or the video ended); those never confirmed are dropped."""
        ended, self.tracks = [t for t in self.tracks if t.confirmed], []
        return ended


class ReorderBuffer(Generic[T]):
    """Releases items in seq order. A missing seq is waited for until `window` later items are held or
    the oldest held item has waited `max_wait_s` (a lost result never comes), but not given up on while
    `in_flight(seq)` says its frame is still with the workers (a dead worker's frame is reclaimed after the
    claim timeout), for at most `max_hold_s`. A seq beyond `last_seq()`, the last one ingest assigned, is
    a bad entry: dropped and counted, never a new horizon."""

    RECHECK_S = 0.25  # how often a seq held back by `in_flight` is asked about again

    def __init__(
        self,
        window: int = 16,
        max_wait_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        in_flight: Callable[[int], bool] | None = None,
        last_seq: Callable[[], int] | None = None,
        max_hold_s: float = 60.0,
    ):
        self.window = window
        self.max_wait_s = max_wait_s
        self.clock = clock
        self.in_flight = in_flight
        self.last_seq = last_seq
        self.max_hold_s = max_hold_s
        self.pending: dict[int, tuple[T, float]] = {}
        self.next_seq: int | None = None
        self.late = 0  # items that came after their turn had passed
        self.gaps = 0  # seqs given up on (skipped live frames, or lost)
        self.bad = 0  # items with a seq no frame ever had
        self._known_last = -1
        self._recheck_at: float | None = None  # while a missing seq is still in flight

    def push(self, seq: int, item: T, replayed: bool = False) -> list[tuple[int, T]]:
        """Hold `item` and release what is now in order. `replayed`: an item read again after a restart, which
        was released (or counted late) before it when its seq is passed: dropped, not counted again."""
        if self.next_seq is not None and seq < self.next_seq or seq in self.pending:
            if not replayed:
                self.late += 1
            return []
        if self.last_seq is not None and seq > self._known_last:
            self._known_last = self.last_seq()
            if seq > self._known_last:
                self.bad += 1
                return []
        self.pending[seq] = (item, self.clock())
        return self._release(force=False)

    def _overdue(self) -> bool:
        return len(self.pending) > self.window or self.wait_s() == 0.0

    def _may_give_up(self, seq: int) -> bool:
        """False while frame `seq` (or, when starting, any frame up to it) is still with the workers (asked
        every RECHECK_S)."""
        if self.in_flight is None:
            return True
        now = self.clock()
        if now - min(t for _, t in self.pending.values()) >= self.max_hold_s:
            return True
        if self._recheck_at is not None and now < self._recheck_at:
            return False
        if self.in_flight(seq):
            self._recheck_at = now + self.RECHECK_S
            return False
        self._recheck_at = None
        return True

    def _release(self, force: bool) -> list[tuple[int, T]]:
        out: list[tuple[int, T]] = []
        if self.next_seq is None:  # the first results may arrive out of order too: start at the lowest,
            # unless an earlier frame is still with the workers (the first ones may be held by a dead worker)
            if not (force or self._overdue()) or not self._may_give_up(min(self.pending) - 1):
                return out
            self.next_seq = min(self.pending)
        while self.pending:
            if self.next_seq in self.pending:
                out.append((self.next_seq, self.pending.pop(self.next_seq)[0]))
                self.next_seq += 1
                self._recheck_at = None
            elif (force or self._overdue()) and self._may_give_up(self.next_seq):
                lowest = min(self.pending)
                self.gaps += lowest - self.next_seq
                self.next_seq = lowest
            else:
                break
        return out

    def wait_s(self) -> float | None:
        """Seconds until the oldest held item's wait is over (0: now), or until a seq in flight is asked
        about again; None when nothing is held."""
        if not self.pending:
            return None
        now = self.clock()
        if self._recheck_at is not None:
            return max(0.0, self._recheck_at - now)
        return max(0.0, self.max_wait_s - (now - min(t for _, t in self.pending.values())))

    def due(self) -> list[tuple[int, T]]:
        """Items whose wait for a missing seq is over (call it when nothing new arrives)."""
        return self._release(force=False)

    def flush(self) -> list[tuple[int, T]]:
        """Release everything held (the camera went quiet): missing seqs are given up on, except one whose
        frame is still in flight (`in_flight`)."""
        return self._release(force=True)
