"""The worker's pure core, testable without Redis: sort a batch of entries, then analyse the good frames.

triage: entry -> a decoded frame to analyse, a live frame too old to matter or thinned out (skip), or a dead
  letter. When a live camera's frames outrun the workers, each batch takes `per_camera` of the frames that
  came since the last read, spread evenly over them and ending with the newest (`spread_evenly`): the frames
  kept stay evenly spaced in time, and every camera gets the same share of the worker whatever its frame
  rate. Frames of a file (not live) are never skipped. A batch decodes frames while it holds fewer than
  `max_pixels` x BATCH_PIXEL_FRAMES pixels (at least one frame, at most one frame past it, and no header is
  read twice): the rest are deferred, still pending, to the next batches.
analyse: decoded frames -> one `Result` per frame through the shared `FacePipeline`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from fervi.bus import Entry
from fervi.protocol import DeadLetter, Frame, ProtocolError, Result
from fervi.vision.images import ImageError, decode_image
from fervi.vision.pipeline import FacePipeline, Timing

BATCH_PIXEL_FRAMES = 2  # a batch decodes at most this many frames of the largest size allowed


@dataclass
class Work:
    entry: Entry
    frame: Frame
    image: np.ndarray


@dataclass
class Triage:
    work: list[Work] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    gaps: list[tuple[Entry, Result]] = field(default_factory=list)  # markers for skipped and dead frames
    deferred: list[Entry] = field(default_factory=list)  # past the batch's pixel budget: for the next batches

    @property
    def skipped(self) -> list[Entry]:
        """Stale live frames (their markers say "skipped")."""
        return [entry for entry, marker in self.gaps if marker.gap == "skipped"]


def spread_evenly(n: int, k: int) -> list[int]:
    """Indices of `k` of `n` items in order, spaced evenly and always ending with the last (the newest)."""
    if n <= k:
        return list(range(n))
    step = n / k
    return sorted({n - 1 - int(j * step) for j in range(k)})


def triage(
    entries: list[Entry],
    worker: str,
    now: float,
    max_age_s: float,
    max_pixels: int,
    per_camera: int | None = None,
    server_now: float | None = None,
) -> Triage:
    """Sort entries; every skipped frame, and every dead one whose header was readable, gets a gap marker.
    With `per_camera`, each camera's fresh live frames are thinned to that many (`spread_evenly`). A live
    frame's age: with `server_now` (Redis's time now), by Redis's clock from its stream entry's id, so no
    host's clock skew makes fresh frames stale (`fervi.clock`); without, `now` - its capture time."""
    out = Triage()
    frames: list[tuple[Entry, Frame]] = []
    for entry in entries:
        frame = None
        try:
            frame = Frame.from_fields(entry.fields)
            if frame.camera != entry.camera:
                claimed, frame = frame.camera, None  # no marker: the frame does not belong to this stream
                raise ProtocolError(f"camera field {claimed!r} does not match stream {entry.camera!r}")
        except ProtocolError as err:
            _dead(out, entry, frame, str(err), worker, now)
            continue
        if frame.live and _age(entry, frame, now, server_now) > max_age_s:
            out.gaps.append((entry, Result.gap_marker(frame, "skipped", worker, now)))
            continue
        frames.append((entry, frame))
    kept = _thinned(frames, per_camera) if per_camera else frames
    kept_ids = {(entry.camera, entry.entry_id) for entry, _ in kept}
    for entry, frame in frames:
        if (entry.camera, entry.entry_id) not in kept_ids:
            out.gaps.append((entry, Result.gap_marker(frame, "skipped", worker, now)))
    budget = max_pixels * BATCH_PIXEL_FRAMES  # decoded BGR: 3 bytes a pixel, whatever the number of cameras
    decoded = 0  # pixels decoded so far: frames are decoded while under the budget (so at most one frame over)
    for entry, frame in kept:
        if out.work and decoded >= budget:
            out.deferred.append(entry)
            continue
        try:
            image = decode_image(frame.jpeg, max_pixels)
        except ImageError as err:
            _dead(out, entry, frame, str(err), worker, now)
            continue
        decoded += image.shape[0] * image.shape[1]
        out.work.append(Work(entry, frame, image))
    order = {(entry.camera, entry.entry_id): i for i, entry in enumerate(entries)}  # as read, for the logs
    out.dead.sort(key=lambda letter: order[(letter.camera, letter.entry_id)])
    out.gaps.sort(key=lambda gap: order[(gap[0].camera, gap[0].entry_id)])
    return out


def _age(entry: Entry, frame: Frame, now: float, server_now: float | None) -> float:
    """Seconds since Redis took the frame in (its entry id's milliseconds), by Redis's clock; without it, or
    for an id that is not Redis's, since its capture by this host's clock."""
    if server_now is not None:
        millis = entry.entry_id.partition("-")[0]
        if millis.isdigit():
            return server_now - int(millis) / 1000
    return now - frame.captured_at


def _thinned(frames: list[tuple[Entry, Frame]], per_camera: int) -> list[tuple[Entry, Frame]]:
    """Each camera's live frames thinned to `per_camera`, spread evenly; file frames all kept; order kept."""
    live: dict[str, list[int]] = {}
    for i, (_, frame) in enumerate(frames):
        if frame.live:
            live.setdefault(frame.camera, []).append(i)
    dropped: set[int] = set()
    for indices in live.values():
        keep = {indices[j] for j in spread_evenly(len(indices), per_camera)}
        dropped.update(i for i in indices if i not in keep)
    return [pair for i, pair in enumerate(frames) if i not in dropped]


def _dead(out: Triage, entry: Entry, frame: Frame | None, reason: str, worker: str, now: float) -> None:
    """A dead letter for an entry no worker can use, with a gap marker where its seq is known."""
    out.dead.append(DeadLetter(entry.camera, entry.entry_id, reason, worker, now, DeadLetter.summarize(entry.fields)))
    if frame is not None and frame.seq >= 0:
        out.gaps.append((entry, Result.gap_marker(frame, "dead", worker, now)))


def analyse(
    work: list[Work], pipeline: FacePipeline, worker: str, dequeued_at: float, timing: Timing | None = None
) -> list[Result]:
    faces = pipeline.analyze(
        [w.image for w in work], timing, [(w.frame.camera, w.frame.seq, w.frame.captured_at) for w in work]
    )
    done_at = time.time()
    return [
        Result(
            camera=w.frame.camera,
            seq=w.frame.seq,
            index=w.frame.index,
            captured_at=w.frame.captured_at,
            dequeued_at=dequeued_at,
            done_at=done_at,
            worker=worker,
            width=w.image.shape[1],
            height=w.image.shape[0],
            faces=f,
        )
        for w, f in zip(work, faces, strict=True)
    ]
