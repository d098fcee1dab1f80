"""The tracker's output and the statistics read from it.

- per camera: the tracks stream (one entry per frame, every face with its track id), the tracker's read
  position, the next track id, and the number of faces in its latest frame;
- face-seconds per emotion per camera in 1-second buckets (kept `SECOND_RETENTION_S`) and 1-minute
  buckets (kept `MINUTE_RETENTION_S`): each face of a frame adds the frame's duration to its track's
  smoothed emotions, spread over the seconds that duration covers; beside them the seconds the camera was
  observed (`observed`, faces or not) and not observed (`unobserved`: gaps beyond the hold), so a chart
  tells "no face" from "not watched" (the face-time rule: `fervi.tracking`);
- per track: start, end, frames, dominant emotion and seconds per emotion (kept `TRACK_RETENTION_S` after
  it ends).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import redis

from ..emotions import EMOTIONS
from ..protocol import ProtocolError, TrackEntry, answer_stamp
from ..tracking import FrameTracks, Track
from .core import BusCore, decode, entry_fields, stream_id, sync
from .keys import (
    aggregate_key,
    live_key,
    stats_key,
    track_id_key,
    track_index_key,
    track_key,
    tracker_position_key,
    tracker_state_key,
    tracks_key,
)

SECOND_RETENTION_S = 3600
MINUTE_RETENTION_S = 7 * 86400
TRACK_RETENTION_S = 7 * 86400
N = TypeVar("N", int, float)
RESOLUTIONS = {"1s": (1, 60, SECOND_RETENTION_S), "1m": (60, 3600, MINUTE_RETENTION_S)}  # step, per key, keep


COVERAGE = ("observed", "unobserved")  # the aggregates' fields beside the emotions


def spans(start: float, end: float, step: int) -> list[tuple[int, float]]:
    """The buckets of `step` seconds that [start, end) covers, with the seconds of it in each."""
    out = []
    bucket = int(start // step) * step
    while bucket < end:
        seconds = min(end, bucket + step) - max(start, bucket)
        if seconds > 0:
            out.append((bucket, seconds))
        bucket += step
    return out


def _queue_seconds(
    pipe: redis.client.Pipeline, camera: str, start: float, end: float, amounts: dict[str, float]
) -> None:
    """Add `amounts` (name -> seconds over [start, end)) to the aggregates, shared among the buckets covered."""
    amounts = {name: v for name, v in amounts.items() if v > 0}
    if not amounts or end <= start:
        return
    for resolution, (step, per_key, keep) in RESOLUTIONS.items():
        for bucket, seconds in spans(start, end, step):
            key = aggregate_key(camera, resolution, bucket // per_key * per_key)
            for name, total in amounts.items():
                pipe.hincrbyfloat(key, f"{bucket}:{name}", round(total * seconds / (end - start), 6))
            pipe.expire(key, keep + per_key)


def _queue_frame(pipe: redis.client.Pipeline, camera: str, frame: FrameTracks) -> None:
    observed_from = frame.ts - frame.duration
    emotions = dict(zip(EMOTIONS, frame.emotion_seconds.tolist(), strict=True))
    _queue_seconds(pipe, camera, observed_from, frame.ts, {**emotions, "observed": frame.duration})
    _queue_seconds(pipe, camera, observed_from - frame.unobserved, observed_from, {"unobserved": frame.unobserved})
    pipe.hset(live_key(camera), mapping={"active": len(frame.faces), "ts": f"{frame.ts:.3f}", "seq": frame.seq})
    for track in frame.started:
        _queue_track(pipe, camera, track, ended=False)
    for track in frame.ended:
        _queue_track(pipe, camera, track, ended=True)


def _queue_track(pipe: redis.client.Pipeline, camera: str, track: Track, ended: bool) -> None:
    key = track_key(camera, track.id)
    pipe.hset(
        key,
        mapping={
            "id": track.id,
            "start": f"{track.started_at:.3f}",
            "end": f"{track.last_seen:.3f}",
            "frames": track.frames,
            "dominant": track.dominant,
            "open": 0 if ended else 1,
            **{f"s_{e}": f"{v:.3f}" for e, v in zip(EMOTIONS, track.emotion_seconds, strict=True)},
        },
    )
    pipe.expire(key, TRACK_RETENTION_S)
    pipe.zadd(track_index_key(camera), {str(track.id): track.last_seen})
    pipe.zremrangebyscore(track_index_key(camera), 0, time.time() - TRACK_RETENTION_S)


@dataclass(frozen=True)
class TrackerCommit:
    """What the tracker commits with its output, in the same transaction, so that a tracker killed at any
    moment resumes exactly where its last output ends: where to read the results stream again from, its
    state snapshot (opaque here), and the late results it counted meanwhile."""

    position: str
    snapshot: str
    late: int = 0


def _queue_commit(pipe: redis.client.Pipeline, camera: str, commit: TrackerCommit | None) -> None:
    if commit is None:
        return
    pipe.set(tracker_position_key(camera), commit.position)
    pipe.set(tracker_state_key(camera), commit.snapshot)
    if commit.late:
        pipe.hincrby(stats_key(camera), "late", commit.late)


class Tracks(BusCore):
    # --- the tracker writes ------------------------------------------------------------------
    def tracker_position(self, camera: str) -> str:
        """Where the tracker left off in a camera's results stream ("0-0" at first)."""
        position = self.redis.get(tracker_position_key(camera))
        return decode(position) if position else "0-0"

    def tracker_snapshot(self, camera: str) -> str | None:
        """The tracker's last committed state snapshot of a camera (`TrackerCommit.snapshot`), None when none."""
        snapshot = sync(self.redis.get(tracker_state_key(camera)))
        return None if snapshot is None else decode(snapshot)

    def next_track_id(self, camera: str) -> int:
        """A track id never given before on this camera (by any tracker process)."""
        return int(sync(self.redis.incr(track_id_key(camera))))

    @staticmethod
    def entry_before(entry_id: str) -> str:
        """The stream entry id just before `entry_id`: reading after it reads `entry_id` again."""
        ms, seq = stream_id(entry_id)
        if seq:
            return f"{ms}-{seq - 1}"
        return f"{ms - 1}-{2**64 - 1}" if ms else "0-0"

    @staticmethod
    def entry_order(entry_id: str) -> tuple[int, int]:
        """A stream entry id as a key that sorts as Redis orders entries."""
        return stream_id(entry_id)

    def publish_tracks(
        self,
        camera: str,
        tracked: list[tuple[TrackEntry, FrameTracks]],
        maxlen: int,
        still_open: Sequence[Track] = (),
        commit: TrackerCommit | None = None,
    ) -> None:
        """Per tracked frame: its tracks entry, its face-seconds, the faces now live, and tracks started or
        ended; `still_open`: tracks whose records are brought up to date (end, frames, seconds) while they
        go on; `commit`: the tracker's position and state after these frames. One transaction (all of a
        camera's keys share its hash tag, so on a cluster too): all of it is written or, when Redis refuses
        writes (OOM, MISCONF, READONLY: raised), none; a key some client spoilt is skipped (see `execute`)."""
        pipe = self.redis.pipeline(transaction=True)
        for entry, frame in tracked:
            pipe.xadd(tracks_key(camera), entry_fields(entry.to_fields()), maxlen=maxlen, approximate=True)
            _queue_frame(pipe, camera, frame)
        for track in still_open:
            _queue_track(pipe, camera, track, ended=False)
        _queue_commit(pipe, camera, commit)
        self.execute(pipe, "tracker_write", camera)

    def end_tracks(self, camera: str, ended: Sequence[Track], commit: TrackerCommit | None = None) -> None:
        """A camera went quiet (or a tracker found open tracks it cannot go on with): its tracks end and it
        shows no face; with the tracker's `commit`, in one transaction (see `publish_tracks`)."""
        pipe = self.redis.pipeline(transaction=True)
        for track in ended:
            _queue_track(pipe, camera, track, ended=True)
        pipe.hset(live_key(camera), "active", "0")
        _queue_commit(pipe, camera, commit)
        self.execute(pipe, "tracker_write", camera)

    def close_open_tracks(self, camera: str, commit: TrackerCommit) -> int:
        """End the track records still marked open (a tracker that left no state it can go on from: they stay
        as they were last written, ended) and commit a fresh start, in one transaction. Returns how many."""
        members = sync(self.redis.zrange(track_index_key(camera), 0, -1))
        ids = [int(m) for m in members if m.isdigit()]
        read = self.redis.pipeline(transaction=False)
        for track_id in ids:
            read.hget(track_key(camera, track_id), "open")
        flags = read.execute(raise_on_error=False)
        open_ids = [i for i, flag in zip(ids, flags, strict=True) if flag == b"1"]
        pipe = self.redis.pipeline(transaction=True)
        for track_id in open_ids:
            pipe.hset(track_key(camera, track_id), "open", "0")
        pipe.hset(live_key(camera), "active", "0")
        _queue_commit(pipe, camera, commit)
        self.execute(pipe, "tracker_write", camera)
        return len(open_ids)

    # --- readers -----------------------------------------------------------------------------
    def read_tracks(
        self, positions: dict[str, str], count: int, block_ms: int
    ) -> list[tuple[str, list[tuple[str, dict[Any, Any]]]]]:
        """Per camera, tracks entries after its position, as (camera, [(entry id, fields)])."""
        return self._read_after(tracks_key, positions, count, block_ms)

    def frame_rates(self, camera: str, frames: int = 60) -> dict[str, float]:
        """`frame_rates` of a camera's newest `frames` tracks entries."""
        try:
            newest = sync(self.redis.xrevrange(tracks_key(camera), count=frames))
        except redis.ResponseError:
            return frame_rates([])
        stamps = []
        for _, fields in reversed(newest):
            try:
                stamps.append(answer_stamp(fields))  # the faces' JSON is not needed: not parsed
            except ProtocolError:
                continue  # an entry FERVI did not write
        return frame_rates(stamps)

    def last_tracks_id(self, camera: str) -> str:
        """The id of a camera's newest tracks entry ("0-0" when none): read after it for new ones only."""
        newest = sync(self.redis.xrevrange(tracks_key(camera), count=1))
        return decode(newest[0][0]) if newest else "0-0"

    def track_entries(self, camera: str, after: str = "0-0", count: int | None = None) -> list[tuple[str, TrackEntry]]:
        """Tracks entries after entry id `after`, oldest first."""
        return [
            (decode(i), TrackEntry.from_fields(f))
            for i, f in sync(self.redis.xrange(tracks_key(camera), min=f"({after}", count=count))
        ]

    def emotion_series(
        self, camera: str, resolution: str = "1s", start: float | None = None, end: float | None = None
    ) -> dict[str, list[Any]]:
        """Face-seconds per emotion per bucket, and the seconds observed and not observed in each: {"t": [bucket
        starts], "angry": [...], ..., "observed": [...], "unobserved": [...]}; empty buckets are 0."""
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}")
        step, per_key, keep = RESOLUTIONS[resolution]
        end = time.time() if end is None else end
        start = end - 300 * step if start is None else start
        start, end = int(start // step) * step, int(end // step) * step
        keys = range(int(start // per_key) * per_key, end + 1, per_key)
        pipe = self.redis.pipeline(transaction=False)
        for key_bucket in keys:
            pipe.hgetall(aggregate_key(camera, resolution, key_bucket))
        values: dict[tuple[int, str], float] = {}
        for reply in pipe.execute(raise_on_error=False):
            if isinstance(reply, redis.ResponseError):
                continue  # a key some client made into another type: no data for its buckets
            for field, value in reply.items():
                try:
                    bucket, emotion = field.decode().split(":")
                    key, number = (int(bucket), emotion), float(value)
                except (UnicodeDecodeError, ValueError):
                    continue  # a field FERVI did not write
                if math.isfinite(number):  # nan and inf are not JSON
                    values[key] = number
        times = list(range(start, end + 1, step))
        names = (*EMOTIONS, *COVERAGE)
        return {"t": times, **{e: [round(values.get((t, e), 0.0), 3) for t in times] for e in names}}

    def emotion_totals(
        self, camera: str, resolution: str = "1m", start: float | None = None, end: float | None = None
    ) -> dict[str, float]:
        series = self.emotion_series(camera, resolution, start, end)
        return {e: round(sum(series[e]), 3) for e in EMOTIONS}

    def track_count(self, camera: str, since: float = 0.0) -> int:
        """How many tracks of a camera were seen since `since` (all of them, where `tracks` lists a few)."""
        try:
            return int(sync(self.redis.zcount(track_index_key(camera), since, "+inf")))
        except redis.ResponseError:
            return 0

    def tracks(self, camera: str, since: float = 0.0, limit: int = 200) -> list[dict[str, Any]]:
        """Tracks of a camera seen since `since`, newest first: id, start, end, frames, dominant, seconds."""
        try:
            members = sync(self.redis.zrevrangebyscore(track_index_key(camera), "+inf", since, start=0, num=limit))
        except redis.ResponseError:
            return []
        ids = [int(m) for m in members if m.isdigit()]  # a member FERVI did not write is left out
        pipe = self.redis.pipeline(transaction=False)
        for track_id in ids:
            pipe.hgetall(track_key(camera, track_id))
        return [t for t in map(_parse_track, pipe.execute(raise_on_error=False)) if t is not None]

    def track(self, camera: str, track_id: int) -> dict[str, Any] | None:
        """One track's record (as in `tracks`), or None."""
        try:
            return _parse_track(sync(self.redis.hgetall(track_key(camera, track_id))))
        except redis.ResponseError:
            return None

    def track_timeline(
        self, camera: str, track_id: int, start: float, end: float, max_points: int = 300
    ) -> list[dict[str, Any]]:
        """One track's smoothed probabilities over time, from the tracks stream between `start` and `end`
        (entry ids are the tracker's clock, close to capture time): at most `max_points`, evenly picked.
        Empty once the stream (MAXLEN ~ FERVI_RESULTS_MAXLEN) no longer holds the track's frames."""
        low, high = int((start - 5) * 1000), int((end + 5) * 1000)
        try:
            entries = sync(
                self.redis.xrange(tracks_key(camera), f"{max(0, low)}-0", f"{high}-18446744073709551615", count=20000)
            )
        except redis.ResponseError:
            return []
        points = []
        for _, fields in entries:
            try:
                entry = TrackEntry.from_fields(fields)
            except ProtocolError:
                continue  # an entry FERVI did not write
            if not entry.faces.is_tracked or not start - 0.5 <= entry.captured_at <= end + 0.5:
                continue
            hits = np.flatnonzero(entry.faces.track_ids == track_id)
            if hits.size:
                probs = entry.faces.label_probs[hits[0]]  # tracked: the track's smoothed probabilities
                points.append(
                    {
                        "t": round(entry.captured_at, 3),
                        "label": EMOTIONS[int(np.argmax(probs))],
                        "probs": [round(float(p), 4) for p in probs],
                    }
                )
        if len(points) > max_points:
            picks = np.linspace(0, len(points) - 1, max_points).round().astype(int)
            points = [points[i] for i in picks]
        return points

    def _live_number(self, camera: str, field: str, kind: Callable[[Any], N]) -> N:
        try:
            value = sync(self.redis.hget(live_key(camera), field))
            return kind(value) if value is not None else kind(0)
        except (redis.ResponseError, ValueError):  # a key or field some client spoilt
            return kind(0)

    def last_frame_at(self, camera: str) -> float:
        """Capture time of the newest tracked frame of a camera (0 when none)."""
        return self._live_number(camera, "ts", float)

    def active_faces(self, camera: str) -> int:
        return self._live_number(camera, "active", int)


def frame_rates(stamps: Sequence[tuple[float, int]]) -> dict[str, float]:
    """From a camera's newest tracked frames as (capture time, seq), oldest first: `fps`, the frames processed
    a second; `camera_fps`, the frames the camera sent a second (seqs are given to every frame, processed or
    skipped); `skipped_pct`, the share skipped; `last_frame_at`, the newest capture time (0: none)."""
    if not stamps:
        return {"fps": 0.0, "camera_fps": 0.0, "skipped_pct": 0.0, "last_frame_at": 0.0}
    (t0, s0), (t1, s1) = stamps[0], stamps[-1]
    span = t1 - t0
    fps = (len(stamps) - 1) / span if span > 0 else 0.0
    camera_fps = max(fps, (s1 - s0) / span) if span > 0 else 0.0
    skipped = 100 * (1 - fps / camera_fps) if camera_fps > 0 else 0.0
    return {
        "fps": round(fps, 1),
        "camera_fps": round(camera_fps, 1),
        "skipped_pct": round(skipped),
        "last_frame_at": round(t1, 3),
    }


def _parse_track(reply: Any) -> dict[str, Any] | None:
    """A track record as the tracker wrote it, or None for one FERVI did not write."""
    if not reply or isinstance(reply, redis.ResponseError):
        return None
    try:
        info = {k.decode(): v.decode() for k, v in reply.items()}
        track = {
            "id": int(info["id"]),
            "start": float(info["start"]),
            "end": float(info["end"]),
            "frames": int(info["frames"]),
            "dominant": info["dominant"],
            "open": info.get("open") == "1",
            "seconds": {e: float(info.get(f"s_{e}", 0)) for e in EMOTIONS},
        }
    except (KeyError, UnicodeDecodeError, ValueError):
        return None
    if all(math.isfinite(v) for v in (track["start"], track["end"], *track["seconds"].values())):
        return track
    return None
