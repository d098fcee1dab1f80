"""The tracker's output and the statistics read from it.

- per camera: the tracks stream (one entry per frame, every face with its track id), the tracker's read
  position, the next track id, and the number of faces in its latest frame;
- face-seconds per emotion per camera in 1-second buckets (kept `SECOND_RETENTION_S`) and 1-minute
  buckets (kept `MINUTE_RETENTION_S`): each face of a frame adds the frame's duration to its track's
  smoothed emotion;
- per track: start, end, frames, dominant emotion and seconds per emotion (kept `TRACK_RETENTION_S` after
  it ends).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import redis

from ..emotions import EMOTIONS
from ..protocol import ProtocolError, TrackEntry
from ..tracking import FrameTracks, Track
from .core import BusCore, decode, entry_fields, sync
from .keys import (
    aggregate_key,
    live_key,
    track_id_key,
    track_index_key,
    track_key,
    tracker_position_key,
    tracks_key,
)

SECOND_RETENTION_S = 3600
MINUTE_RETENTION_S = 7 * 86400
TRACK_RETENTION_S = 7 * 86400
N = TypeVar("N", int, float)
RESOLUTIONS = {"1s": (1, 60, SECOND_RETENTION_S), "1m": (60, 3600, MINUTE_RETENTION_S)}  # step, per key, keep


def _bucket(ts: float, resolution: str) -> tuple[str, str]:
    step, per_key, _ = RESOLUTIONS[resolution]
    start = int(ts // step) * step
    return str(int(ts // per_key) * per_key), str(start)


def _queue_frame(pipe: redis.client.Pipeline, camera: str, frame: FrameTracks) -> None:
    for emotion, seconds in zip(EMOTIONS, frame.emotion_seconds.tolist(), strict=True):
        if seconds <= 0:
            continue
        for resolution, (_, per_key, keep) in RESOLUTIONS.items():
            key_bucket, bucket = _bucket(frame.ts, resolution)
            key = aggregate_key(camera, resolution, int(key_bucket))
            pipe.hincrbyfloat(key, f"{bucket}:{emotion}", seconds)
            pipe.expire(key, keep + per_key)
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


class Tracks(BusCore):
    # --- the tracker writes ------------------------------------------------------------------
    def tracker_position(self, camera: str) -> str:
        """Where the tracker left off in a camera's results stream ("0-0" at first)."""
        position = self.redis.get(tracker_position_key(camera))
        return decode(position) if position else "0-0"

    def set_tracker_position(self, camera: str, position: str) -> None:
        self.redis.set(tracker_position_key(camera), position)

    def next_track_id(self, camera: str) -> int:
        """A track id never given before on this camera (by any tracker process)."""
        return int(sync(self.redis.incr(track_id_key(camera))))

    def publish_tracks(
        self, camera: str, tracked: list[tuple[TrackEntry, FrameTracks]], maxlen: int, still_open: Sequence[Track] = ()
    ) -> None:
        """Per tracked frame: its tracks entry, its face-seconds, the faces now live, and tracks started or
        ended; `still_open`: tracks whose records are brought up to date (end, frames, seconds) while they
        go on. One round trip, every command run (see `execute`)."""
        pipe = self.redis.pipeline(transaction=False)
        for entry, frame in tracked:
            pipe.xadd(tracks_key(camera), entry_fields(entry.to_fields()), maxlen=maxlen, approximate=True)
            _queue_frame(pipe, camera, frame)
        for track in still_open:
            _queue_track(pipe, camera, track, ended=False)
        self.execute(pipe, "tracker_write", camera)

    def end_tracks(self, camera: str, ended: list[Track]) -> None:
        """A camera went quiet: its tracks end and it shows no face."""
        pipe = self.redis.pipeline(transaction=False)
        for track in ended:
            _queue_track(pipe, camera, track, ended=True)
        pipe.hset(live_key(camera), "active", "0")
        self.execute(pipe, "tracker_write", camera)

    # --- readers -----------------------------------------------------------------------------
    def read_tracks(
        self, positions: dict[str, str], count: int, block_ms: int
    ) -> list[tuple[str, list[tuple[str, dict[Any, Any]]]]]:
        """Per camera, tracks entries after its position, as (camera, [(entry id, fields)])."""
        return self._read_after(tracks_key, positions, count, block_ms)

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
        """Face-seconds per emotion per bucket: {"t": [bucket starts], "angry": [...], ...}; empty buckets are 0."""
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
        return {"t": times, **{e: [round(values.get((t, e), 0.0), 3) for t in times] for e in EMOTIONS}}

    def emotion_totals(
        self, camera: str, resolution: str = "1m", start: float | None = None, end: float | None = None
    ) -> dict[str, float]:
        series = self.emotion_series(camera, resolution, start, end)
        return {e: round(sum(series[e]), 3) for e in EMOTIONS}

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
