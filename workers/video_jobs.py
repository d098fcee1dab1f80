"""Offline video analysis as RQ jobs: a video is cut into frame ranges analysed in parallel, then a merge
job (RQ `depends_on`) runs the live tracker (`fervi.tracking`, imported) across all of them, so a face keeps
one id over segment borders, and writes the outputs (`video_outputs`).

A segment writes its result file atomically, so a segment retried after its worker died (RQ `Retry`)
replaces, never duplicates, what it found. Jobs report frames done/total in `job.meta`.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from rq import Queue, Retry, get_current_job

from fervi.emotions import NUM_EMOTIONS
from fervi.protocol import Faces
from fervi.settings import load_settings
from fervi.tracking import FaceTracker

from .video_outputs import FaceRow, summarize, write_annotated, write_csv, write_summary, write_timeline

log = logging.getLogger(__name__)

QUEUE = "fervi-video"
BATCH = 8
META_EVERY = 10
SEGMENT_TIMEOUT_S = 3600


class VideoError(ValueError):
    """A file that is not a readable video; the message is what users see."""


@dataclass
class VideoInfo:
    path: str
    frames: int
    fps: float
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps if self.fps else 0.0


def probe(path: str | Path) -> VideoInfo:
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file")
    capture = cv2.VideoCapture(str(path))
    try:
        ok, image = capture.read() if capture.isOpened() else (False, None)
        if not ok or image is None:
            raise VideoError(f"{path}: not a readable video (OpenCV could not decode a frame)")
        fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        return VideoInfo(str(path.resolve()), frames, fps if 0 < fps < 1000 else 25.0, image.shape[1], image.shape[0])
    finally:
        capture.release()


def segment_bounds(frames: int, segments: int) -> list[tuple[int, int | None]]:
    """Frame ranges [start, stop); the last one runs to the end of the file (frame counts can be off)."""
    segments = max(1, min(segments, max(1, frames)))
    edges = np.linspace(0, frames, segments + 1).round().astype(int).tolist()
    return [(edges[i], edges[i + 1] if i < segments - 1 else None) for i in range(segments)]


def _progress(done: int, total: int) -> None:
    job = get_current_job()
    if job is not None:
        job.meta.update({"done": done, "total": total})
        job.save_meta()


def seek(capture: cv2.VideoCapture, video: str, start: int) -> int:
    """Position `capture` at frame `start` and return the index reached.

    OpenCV's FFmpeg backend seeks to the exact frame when the file's timestamps allow it, and then reports
    that position; if it reports another, the file is reopened and read up to `start` frame by frame, which
    is exact for every codec (and costs one decode of everything before the segment).
    """
    if start == 0:
        return 0
    if capture.set(cv2.CAP_PROP_POS_FRAMES, start) and int(capture.get(cv2.CAP_PROP_POS_FRAMES)) == start:
        return start
    log.warning("event=inexact_seek video=%s frame=%d fallback=sequential", video, start)
    capture.open(video)
    index = 0
    while index < start and capture.grab():
        index += 1
    return index


def analyze_segment(video: str, start: int, stop: int | None, every: int, out_file: str) -> dict:
    """Analyse frames [start, stop) whose index is a multiple of `every`; write them to `out_file` (.npz)."""
    from fervi.vision.pipeline import FacePipeline

    settings = load_settings()
    pipeline = FacePipeline.from_settings(settings)
    capture = cv2.VideoCapture(video)
    if not capture.isOpened():
        raise VideoError(f"{video}: not a readable video")
    total = (stop - start) if stop is not None else max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) - start)
    index = seek(capture, video, start)
    frames, boxes, scores, probs, counts = [], [], [], [], []
    batch: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        for (i, _), faces in zip(batch, pipeline.analyze([image for _, image in batch])):
            frames.append(i)
            counts.append(len(faces))
            boxes.append(faces.boxes)
            scores.append(faces.scores)
            probs.append(faces.probs)
        batch.clear()

    done = 0
    try:
        while stop is None or index < stop:
            if index % every:
                if not capture.grab():  # a skipped frame is read, not decoded into an image
                    break
            else:
                ok, image = capture.read()
                if not ok:
                    break
                batch.append((index, image))
                if len(batch) == BATCH:
                    flush()
            index += 1
            done += 1
            if done % META_EVERY == 0:
                _progress(done, total)
        flush()
    finally:
        capture.release()
    if not frames and start == 0:
        raise VideoError(f"{video}: no frame could be decoded")
    out = Path(out_file)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, frames=np.array(frames, np.int64), counts=np.array(counts, np.int64),
             boxes=np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32),
             scores=np.concatenate(scores) if scores else np.zeros(0, np.float32),
             probs=np.concatenate(probs) if probs else np.zeros((0, NUM_EMOTIONS), np.float32))
    tmp.replace(out)
    _progress(done, done)
    return {"start": start, "stop": index, "analysed": len(frames), "faces": int(sum(counts))}


def merge_segments(info: dict, segment_files: list[str], out_dir: str, every: int) -> dict:
    """Track faces across all segments in frame order and write the video's outputs."""
    settings = load_settings()
    video = VideoInfo(**info)
    tracker = FaceTracker(settings.track_iou, settings.track_max_misses, settings.track_half_life_s)
    rows: list[FaceRow] = []
    analysed: set[int] = set()
    for file in segment_files:
        data = np.load(file)
        offset = 0
        for frame, count in zip(data["frames"].tolist(), data["counts"].tolist()):
            faces = Faces(data["boxes"][offset : offset + count], data["scores"][offset : offset + count],
                          data["probs"][offset : offset + count])
            offset += count
            analysed.add(frame)
            t = frame / video.fps
            for face in tracker.update(frame, t, faces).faces:
                rows.append(FaceRow(frame, t, face.track_id, face.box, face.label, face.score, face.raw))
    out = Path(out_dir)
    _progress(0, 3)
    write_csv(rows, out / "faces.csv")
    frames_total = max(analysed) + 1 if analysed else 0
    summary = summarize(rows, {"video": video.path, "fps": video.fps, "frames": frames_total,
                               "width": video.width, "height": video.height,
                               "duration_s": round(frames_total / video.fps, 3), "analysed_frames": len(analysed),
                               "every": every}, every / video.fps)
    write_summary(summary, out / "summary.json")
    _progress(1, 3)
    written = write_annotated(video.path, rows, analysed, out / "annotated.mp4", video.fps)
    _progress(2, 3)
    write_timeline(rows, summary["duration_s"], out / "timeline.png")
    shutil.rmtree(out / ".segments", ignore_errors=True)
    _progress(3, 3)
    return {"out": str(out), "frames": written, "face_rows": len(rows), "tracks": summary["tracks"]}


@dataclass
class Submitted:
    video: str
    out_dir: str
    segments: list  # rq jobs
    merge: object  # rq job

    @property
    def jobs(self) -> list:
        return [*self.segments, self.merge]


def submit(queue: Queue, video: str, out_root: str | Path, segments: int, every: int, retries: int = 2) -> Submitted:
    """Enqueue the segment jobs and the merge job of one video. Raises VideoError for unreadable files."""
    info = probe(video)
    out = Path(out_root) / Path(video).stem
    (out / ".segments").mkdir(parents=True, exist_ok=True)
    files, jobs = [], []
    bounds = segment_bounds(info.frames, segments)
    for i, (start, stop) in enumerate(bounds):
        file = str((out / ".segments" / f"{i:03d}.npz").resolve())
        files.append(file)
        jobs.append(queue.enqueue(analyze_segment, info.path, start, stop, every, file, retry=Retry(max=retries),
                                  job_timeout=SEGMENT_TIMEOUT_S, meta={"video": info.path, "kind": "segment",
                                                                         "done": 0, "total": (stop or info.frames) - start},
                                  description=f"segment {i + 1}/{len(bounds)} of {Path(video).name}"))
    merge = queue.enqueue(merge_segments, asdict(info), files, str(out.resolve()), every, depends_on=jobs,
                          retry=Retry(max=retries), job_timeout=SEGMENT_TIMEOUT_S,
                          meta={"video": info.path, "kind": "merge", "done": 0, "total": 3},
                          description=f"merge {Path(video).name}")
    log.info("event=video_submitted video=%s frames=%d segments=%d out=%s", video, info.frames, len(jobs), out)
    return Submitted(info.path, str(out), jobs, merge)

