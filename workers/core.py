"""The worker's pure core, testable without Redis: sort a batch of entries, then analyse the good frames.

triage: entry -> a decoded frame to analyse, a live frame too old to matter (skip), or a dead letter.
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

    @property
    def skipped(self) -> list[Entry]:
        """Stale live frames (their markers say "skipped")."""
        return [entry for entry, marker in self.gaps if marker.gap == "skipped"]


def triage(entries: list[Entry], worker: str, now: float, max_age_s: float, max_pixels: int) -> Triage:
    """Sort entries; every skipped frame, and every dead one whose header was readable, gets a gap marker."""
    out = Triage()
    for entry in entries:
        frame = None
        try:
            frame = Frame.from_fields(entry.fields)
            if frame.camera != entry.camera:
                claimed, frame = frame.camera, None  # no marker: the frame does not belong to this stream
                raise ProtocolError(f"camera field {claimed!r} does not match stream {entry.camera!r}")
            if frame.live and now - frame.captured_at > max_age_s:
                out.gaps.append((entry, Result.gap_marker(frame, "skipped", worker, now)))
                continue
            image = decode_image(frame.jpeg, max_pixels)
        except (ProtocolError, ImageError) as err:
            out.dead.append(
                DeadLetter(entry.camera, entry.entry_id, str(err), worker, now, DeadLetter.summarize(entry.fields))
            )
            if frame is not None and frame.seq >= 0:
                out.gaps.append((entry, Result.gap_marker(frame, "dead", worker, now)))
            continue
        out.work.append(Work(entry, frame, image))
    return out


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
