"""Emotion statistics in Redis, written by the tracker and read by the dashboard and reports.

- face-seconds per emotion per camera in 1-second buckets (kept `SECOND_RETENTION_S`) and 1-minute
  buckets (kept `MINUTE_RETENTION_S`); each face of a frame adds the frame's duration to its track's
  smoothed emotion;
- per track: start, end, frames and dominant emotion (kept `TRACK_RETENTION_S` after it ends);
- per camera: the number of faces in its latest frame.
"""

from __future__ import annotations

import math
import time

import redis

from .bus import aggregate_key, live_key, track_index_key, track_key
from .emotions import EMOTIONS
from .tracking import FrameTracks, Track

SECOND_RETENTION_S = 3600
MINUTE_RETENTION_S = 7 * 86400
TRACK_RETENTION_S = 7 * 86400
RESOLUTIONS = {"1s": (1, 60, SECOND_RETENTION_S), "1m": (60, 3600, MINUTE_RETENTION_S)}  # step, per key, keep


def _bucket(ts: float, resolution: str) -> tuple[str, str]:
    step, per_key, _ = RESOLUTIONS[resolution]
    start = int(ts // step) * step
    return str(int(ts // per_key) * per_key), str(start)


def record_frame(pipe: redis.client.Pipeline, camera: str, frame: FrameTracks) -> None:
    """Queue the writes for one tracked frame on a pipeline (the caller executes it)."""
    if frame.duration > 0:
        for face in frame.faces:
            for resolution, (_, _, keep) in RESOLUTIONS.items():
                key_bucket, bucket = _bucket(frame.ts, resolution)
                key = aggregate_key(camera, resolution, int(key_bucket))
                pipe.hincrbyfloat(key, f"{bucket}:{face.label}", frame.duration)
                pipe.expire(key, keep + RESOLUTIONS[resolution][1])
    pipe.hset(live_key(camera), mapping={"active": len(frame.faces), "ts": f"{frame.ts:.3f}", "seq": frame.seq})
    for track in frame.started:
        record_track(pipe, camera, track, ended=False)
    for track in frame.ended:
        record_track(pipe, camera, track, ended=True)


def record_track(pipe: redis.client.Pipeline, camera: str, track: Track, ended: bool) -> None:
    key = track_key(camera, track.id)
    pipe.hset(key, mapping={
        "id": track.id, "start": f"{track.started_at:.3f}", "end": f"{track.last_seen:.3f}",
        "frames": track.frames, "dominant": track.dominant, "open": 0 if ended else 1,
        **{f"s_{e}": f"{v:.3f}" for e, v in zip(EMOTIONS, track.emotion_seconds)},
    })
    pipe.expire(key, TRACK_RETENTION_S)
    pipe.zadd(track_index_key(camera), {str(track.id): track.last_seen})
    pipe.zremrangebyscore(track_index_key(camera), 0, time.time() - TRACK_RETENTION_S)


# --- read API ------------------------------------------------------------------------------------

def emotion_series(client: redis.Redis, camera: str, resolution: str = "1s", start: float | None = None,
                   end: float | None = None) -> dict[str, list]:
    """Face-seconds per emotion per bucket: {"t": [bucket starts], "angry": [...], ...}; empty buckets are 0."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}")
    step, per_key, keep = RESOLUTIONS[resolution]
    end = time.time() if end is None else end
    start = end - 300 * step if start is None else start
    start, end = int(start // step) * step, int(end // step) * step
    keys = range(int(start // per_key) * per_key, end + 1, per_key)
    pipe = client.pipeline(transaction=False)
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


def emotion_totals(client: redis.Redis, camera: str, resolution: str = "1m", start: float | None = None,
                   end: float | None = None) -> dict[str, float]:
    series = emotion_series(client, camera, resolution, start, end)
    return {e: round(sum(series[e]), 3) for e in EMOTIONS}


def tracks(client: redis.Redis, camera: str, since: float = 0.0, limit: int = 200) -> list[dict]:
    """Tracks of a camera seen since `since`, newest first: id, start, end, frames, dominant, seconds."""
    try:
        members = client.zrevrangebyscore(track_index_key(camera), "+inf", since, start=0, num=limit)
    except redis.ResponseError:
        return []
    ids = [int(m) for m in members if m.isdigit()]  # a member FERVI did not write is left out
    pipe = client.pipeline(transaction=False)
    for track_id in ids:
        pipe.hgetall(track_key(camera, track_id))
    out = []
    for reply in pipe.execute(raise_on_error=False):
        if not reply or isinstance(reply, redis.ResponseError):
            continue
        try:
            info = {k.decode(): v.decode() for k, v in reply.items()}
            track = {
                "id": int(info["id"]), "start": float(info["start"]), "end": float(info["end"]),
                "frames": int(info["frames"]), "dominant": info["dominant"], "open": info.get("open") == "1",
                "seconds": {e: float(info.get(f"s_{e}", 0)) for e in EMOTIONS},
            }
        except (KeyError, UnicodeDecodeError, ValueError):
            continue  # a track record FERVI did not write
        if all(math.isfinite(v) for v in (track["start"], track["end"], *track["seconds"].values())):
            out.append(track)
    return out


def _live_number(client: redis.Redis, camera: str, field: str, kind):
    try:
        value = client.hget(live_key(camera), field)
        return kind(value) if value is not None else kind(0)
    except (redis.ResponseError, ValueError):  # a key or field some client spoilt
        return kind(0)


def last_frame_at(client: redis.Redis, camera: str) -> float:
    """Capture time of the newest tracked frame of a camera (0 when none)."""
    return _live_number(client, camera, "ts", float)


def active_faces(client: redis.Redis, camera: str) -> int:
    return _live_number(client, camera, "active", int)
