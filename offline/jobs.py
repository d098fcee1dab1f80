"""Offline video analysis as RQ jobs: a video is cut into frame ranges analysed in parallel, then a merge
job (RQ `depends_on`) runs the live tracker (`fervi.tracking`, imported) across all of them, so a face keeps
one id over segment borders, and writes faces.csv, summary.json and timeline.png; the annotated video is
drawn in parallel parts again and joined by a last job without re-encoding (`outputs`).

A segment writes its result file atomically, so a segment retried after its worker died (RQ `Retry`)
replaces, never duplicates, what it found. Every job is idempotent: run again after it (or the whole
video) finished, it returns at once instead of redoing or failing. Jobs report frames done/total in RQ's
job record and, for a dashboard upload, in FERVI's own record of the video, which outlives RQ's job records
(`fervi.bus.queue.report_progress`: the jobs never touch RQ or its connection themselves).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from fervi.bus import VIDEO_QUEUE
from fervi.bus.queue import QueuedJob, VideoQueue, report_progress, update_running_video
from fervi.emotions import NUM_EMOTIONS
from fervi.faces import Faces
from fervi.settings import load_settings
from fervi.tracking import FaceTracker, FrameTracks, Track
from fervi.vision.video import open_file

from .outputs import (
    join_parts,
    load_frames,
    save_frames,
    summarize,
    write_annotated_part,
    write_csv,
    write_summary,
    write_timeline,
)
from .video_io import VideoError, VideoInfo, probe, seek, segment_bounds, video_fps

if TYPE_CHECKING:
    from fervi.vision.pipeline import FacePipeline

log = logging.getLogger(__name__)

QUEUE = VIDEO_QUEUE
BATCH = 8
META_EVERY = 10
SEGMENT_TIMEOUT_S = 3600
JOB_RECORD_TTL_S = 86400  # RQ keeps finished job records this long (its default, 500 s, ends mid-video)


def finished(out_dir: str | Path) -> bool:
    """Whether a video's outputs are complete: the last job joined annotated.mp4 and removed the parts."""
    out = Path(out_dir)
    return (out / "annotated.mp4").exists() and not (out / ".segments").exists()


def _skip(what: str, **extra) -> dict:
    log.info("event=job_already_done job=%s", what)
    return {"skipped": f"{what} already done", **extra}


@dataclass
class _Located:
    """An analysed frame whose faces are located (detected on a keyframe, or interpolated), to be classified."""

    index: int
    image: np.ndarray
    faces: Faces


@dataclass
class _SegmentFaces:
    """What a segment found, one entry per analysed frame: the columns of its result file."""

    frames: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    probs: list[np.ndarray] = field(default_factory=list)

    def add(self, index: int, faces: Faces) -> None:
        assert faces.probs is not None, "faces are added as the classifier returns them"
        self.frames.append(index)
        self.counts.append(len(faces))
        self.boxes.append(faces.boxes)
        self.scores.append(faces.scores)
        self.probs.append(faces.probs)

    def save(self, out: Path) -> None:
        """Written atomically: a segment retried after its worker died replaces what it found."""
        tmp = out.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            frames=np.array(self.frames, np.int64),
            counts=np.array(self.counts, np.int64),
            boxes=np.concatenate(self.boxes) if self.boxes else np.zeros((0, 4), np.float32),
            scores=np.concatenate(self.scores) if self.scores else np.zeros(0, np.float32),
            probs=np.concatenate(self.probs) if self.probs else np.zeros((0, NUM_EMOTIONS), np.float32),
        )
        tmp.replace(out)


class _Keyframes:
    """The analysed frames of one segment on their way to the classifier, in frame order: the detector runs on
    keyframes, the boxes of the frames between two keyframes are interpolated (`fervi.vision.keyframes`), and
    located frames are classified in batches of at least BATCH."""

    def __init__(self, pipeline: FacePipeline, stream: str, fps: float):
        self.pipeline = pipeline
        # the segment is one stream: the detector scans in full every few keyframes and follows between
        self.stream = stream
        self.fps = fps  # a keyframe's video time is the detector's clock (as probe() reads it)
        self.detected = 0  # the keyframes detected so far: consecutive positions of the segment's stream
        self.key: _Located | None = None  # the newest keyframe
        self.between: list[tuple[int, np.ndarray]] = []  # frames after the newest keyframe: no boxes yet
        self.located: list[_Located] = []  # frames up to the newest keyframe, not yet classified
        self.found = _SegmentFaces()

    def add(self, index: int, image: np.ndarray, keyframe: bool) -> None:
        """The next analysed frame; a keyframe (and the segment's first frame) is detected at once."""
        if self.key is not None and not keyframe:
            self.between.append((index, image))
            return
        self._detect(index, image)
        if len(self.located) >= BATCH:
            self._classify()

    def finish(self) -> _SegmentFaces:
        """Classify what is left: the segment's last frame closes its last gap."""
        if self.between:
            self._detect(*self.between.pop())
        if self.located:
            self._classify()
        return self.found

    def _detect(self, index: int, image: np.ndarray) -> None:
        """Detect at frame `index`, then interpolate the frames between the previous keyframe and it."""
        from fervi.vision.keyframes import interpolate

        self.detected += 1
        faces = self.pipeline.detect([image], [(self.stream, self.detected, index / self.fps)])[0]
        key = self.key
        if key is not None:
            for i, between in self.between:
                t = (i - key.index) / (index - key.index)
                self.located.append(_Located(i, between, interpolate(key.faces, faces, t)))
        self.between.clear()
        self.key = _Located(index, image, faces)
        self.located.append(self.key)

    def _classify(self) -> None:
        classified = self.pipeline.classify([f.image for f in self.located], [f.faces for f in self.located])
        for frame, faces in zip(self.located, classified, strict=True):
            self.found.add(frame.index, faces)
        self.located.clear()


def _progress(done: int, total: int) -> None:
    """Units done/total, reported every META_EVERY units (each report writes the job's records)."""
    if done % META_EVERY == 0:
        report_progress(done, total)


def _read_segment(
    capture: cv2.VideoCapture,
    index: int,
    stop: int | None,
    every: int,
    detect_every: int,
    keyframes: _Keyframes,
    total: int,
) -> tuple[int, int]:
    """Read frames from `index` to `stop` (or the end); each whose index is a multiple of `every` goes to
    `keyframes`, every `detect_every`-th of those as a keyframe. Reports progress of `total` frames; returns
    the index after the last frame read and the frames read."""
    done = 0
    while stop is None or index < stop:
        if index % every:
            if not capture.grab():  # a skipped frame is read, not decoded into an image
                break
        else:
            ok, image = capture.read()
            if not ok:
                break
            keyframes.add(index, image, (index // every) % detect_every == 0)
        index += 1
        done += 1
        _progress(done, total)
    return index, done


def analyze_segment(video: str, start: int, stop: int | None, every: int, out_file: str, detect_every: int = 1) -> dict:
    """Analyse frames [start, stop) whose index is a multiple of `every`; write them to `out_file` (.npz).

    The detector runs on every `detect_every`-th analysed frame and on the segment's first and last ones
    (a full scan every `FERVI_DETECTOR_FULL_SCAN_S` of video time, following the faces between); the boxes
    between are interpolated (`fervi.vision.keyframes`) and every analysed frame is classified.
    """
    from fervi.vision.pipeline import FacePipeline

    if Path(out_file).exists() or finished(Path(out_file).parent.parent):
        return _skip(f"segment {start}..{stop}", start=start)
    pipeline = FacePipeline.from_settings(load_settings())
    capture = open_file(video)
    if not capture.isOpened():
        raise VideoError(f"{video}: not a readable video")
    total = (stop - start) if stop is not None else max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) - start)
    keyframes = _Keyframes(pipeline, f"{video}#{start}", video_fps(capture))
    index = seek(capture, video, start)
    try:
        index, done = _read_segment(capture, index, stop, every, detect_every, keyframes, total)
        found = keyframes.finish()
    finally:
        capture.release()
    if not found.frames and start == 0:
        raise VideoError(f"{video}: no frame could be decoded")
    found.save(Path(out_file))
    report_progress(done, done)
    return {"start": start, "stop": index, "analysed": len(found.frames), "faces": int(sum(found.counts))}


def merge_segments(info: dict, segment_files: list[str], out_dir: str, every: int, detect_every: int = 1) -> dict:
    """Track faces across all segments in frame order; write faces.csv, summary.json, timeline.png and the
    tracked rows the annotation parts draw."""
    if finished(out_dir):
        return _skip("merge")
    settings = load_settings()
    video = VideoInfo(**info)
    # each analysed frame stands for `every` frames of video in face-seconds
    tracker = FaceTracker.from_settings(settings, frame_step_s=every / video.fps)
    frames: list[FrameTracks] = []
    tracks: list[Track] = []
    for file in segment_files:
        with np.load(file) as npz:  # each npz[key] reads and unzips again: read every array once
            data = {key: npz[key] for key in npz.files}
        boxes, scores, probs = data["boxes"], data["scores"], data["probs"]
        offset = 0
        for frame, count in zip(data["frames"].tolist(), data["counts"].tolist(), strict=True):
            faces = Faces(
                boxes[offset : offset + count], scores[offset : offset + count], probs[offset : offset + count]
            )
            offset += count
            tracked = tracker.update(frame, frame / video.fps, faces)
            frames.append(tracked)
            tracks += tracked.started
    out = Path(out_dir)
    write_csv(frames, out / "faces.csv")
    frames_total = max(f.seq for f in frames) + 1 if frames else 0
    summary = summarize(
        frames,
        tracks,
        {
            "video": video.path,
            "fps": video.fps,
            "frames": frames_total,
            "width": video.width,
            "height": video.height,
            "duration_s": round(frames_total / video.fps, 3),
            "analysed_frames": len(frames),
            "every": every,
            "detect_every": detect_every,
        },
    )
    write_summary(summary, out / "summary.json")
    write_timeline(frames, summary["duration_s"], out / "timeline.png")
    save_frames(frames, out / ".segments" / "tracked.npz")
    report_progress(1, 1)
    return {"out": str(out), "face_rows": summary["face_rows"], "tracks": summary["tracks"]}


def annotate_part(info: dict, start: int, stop: int | None, out_dir: str, part_file: str) -> dict:
    """Frames [start, stop) with their tracked boxes and labels, as one part of annotated.mp4."""
    if Path(part_file).exists() or finished(out_dir):
        return _skip(f"annotation part {start}..{stop}", start=start)
    video = VideoInfo(**info)
    frames = load_frames(Path(out_dir) / ".segments" / "tracked.npz", video.fps, start, stop)
    total = (stop if stop is not None else video.frames) - start
    written = write_annotated_part(
        video.path,
        frames,
        start,
        stop,
        Path(part_file),
        video.fps,
        on_frame=lambda done: _progress(done, total),
    )
    report_progress(written, written)
    return {"start": start, "frames": written}


def finish_video(part_files: list[str], out_dir: str) -> dict:
    """Join the annotated parts into annotated.mp4, remove the intermediate files, report the outputs."""
    out = Path(out_dir)
    if finished(out):  # run again after the video was done
        capture = open_file(str(out / "annotated.mp4"))
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()
    else:
        frames = join_parts([Path(p) for p in part_files], out / "annotated.mp4")
        shutil.rmtree(out / ".segments", ignore_errors=True)
    summary = json.loads((out / "summary.json").read_text())
    report_progress(1, 1)
    result = {"out": str(out), "frames": frames, "face_rows": summary["face_rows"], "tracks": summary["tracks"]}
    update_running_video(state="finished", ended_at=time.time(), result=result, error="")
    return result


@dataclass
class Submitted:
    """The jobs of one video: segments -> merge -> annotation parts -> finish, each stage depending on the last."""

    video: str
    out_dir: str
    segments: list[QueuedJob]
    merge: QueuedJob
    parts: list[QueuedJob]
    finish: QueuedJob

    @property
    def jobs(self) -> list[QueuedJob]:
        return [*self.segments, self.merge, *self.parts, self.finish]

    @property
    def ids(self) -> list[str]:
        return [job.id for job in self.jobs]

    @property
    def total(self) -> int:
        """Units of work of all its jobs (frames, and 1 per merge or finish): a video's progress bar."""
        return sum(int(j.meta.get("total", 0)) for j in self.jobs)


@dataclass
class _VideoJobs:
    """Enqueues the jobs of one video, with the options and the record (RQ's `meta`) they all share."""

    queue: VideoQueue
    info: VideoInfo
    name: str  # the video's file name, in the jobs' descriptions
    work: Path  # the folder of its intermediate files
    retries: int
    video_id: str | None  # the dashboard's record of the video, which the jobs keep up to date

    def add(
        self, func: Callable[..., Any], *args: Any, kind: str, total: int, description: str, depends_on: Any = None
    ) -> QueuedJob:
        meta = {
            "video": self.info.path,
            "kind": kind,
            "done": 0,
            "total": total,
            **({"video_id": self.video_id} if self.video_id else {}),
        }
        return self.queue.add(
            func,
            *args,
            depends_on=depends_on,
            retries=self.retries,
            job_timeout=SEGMENT_TIMEOUT_S,
            result_ttl=JOB_RECORD_TTL_S,
            meta=meta,
            description=description,
        )

    def per_range(
        self,
        bounds: list[tuple[int, int | None]],
        func: Callable[..., Any],
        args: Callable[[int, int | None, str], tuple[Any, ...]],
        *,
        kind: str,
        title: str,
        file_name: str,
        depends_on: Any = None,
    ) -> tuple[list[str], list[QueuedJob]]:
        """One job per frame range [start, stop) of `bounds`, `func(*args(start, stop, file))`, each writing its
        own file under `work` (`file_name` formatted with the range's number) and described as the `title`'s
        i-th of n; returns the files and the jobs."""
        files, jobs = [], []
        for i, (start, stop) in enumerate(bounds):
            file = str((self.work / file_name.format(i)).resolve())
            files.append(file)
            jobs.append(
                self.add(
                    func,
                    *args(start, stop, file),
                    kind=kind,
                    total=(stop or self.info.frames) - start,
                    description=f"{title} {i + 1}/{len(bounds)} of {self.name}",
                    depends_on=depends_on,
                )
            )
        return files, jobs


def submit(
    queue: VideoQueue,
    video: str,
    out_root: str | Path,
    segments: int,
    every: int,
    retries: int = 2,
    detect_every: int | None = None,
    video_id: str | None = None,
) -> Submitted:
    """Enqueue the jobs of one video. Raises VideoError for unreadable files.

    `detect_every` analysed frames per detector run; None: keyframes 0.1 s of video apart (3 at 30 fps).
    `video_id`: the dashboard's record of the video, which the jobs keep up to date."""
    from fervi.vision.keyframes import detect_every_for

    info = probe(video, load_settings().max_frame_pixels)
    detect_every = detect_every or detect_every_for(info.fps, every)
    out = Path(out_root) / Path(video).stem
    work = out / ".segments"
    work.mkdir(parents=True, exist_ok=True)
    bounds = segment_bounds(info.frames, segments)
    name = Path(video).name
    out_dir = str(out.resolve())
    video_jobs = _VideoJobs(queue, info, name, work, retries, video_id)
    files, jobs = video_jobs.per_range(
        bounds,
        analyze_segment,
        lambda start, stop, file: (info.path, start, stop, every, file, detect_every),
        kind="segment",
        title="segment",
        file_name="{:03d}.npz",
    )
    merge = video_jobs.add(
        merge_segments,
        asdict(info),
        files,
        out_dir,
        every,
        detect_every,
        kind="merge",
        total=1,
        description=f"merge {name}",
        depends_on=jobs,
    )
    part_files, parts = video_jobs.per_range(
        bounds,
        annotate_part,
        lambda start, stop, part: (asdict(info), start, stop, out_dir, part),
        kind="annotate",
        title="annotate part",
        file_name="annotated-{:03d}.mp4",
        depends_on=merge,
    )
    finish = video_jobs.add(
        finish_video, part_files, out_dir, kind="finish", total=1, description=f"finish {name}", depends_on=parts
    )
    log.info(
        "event=video_submitted video=%s frames=%d segments=%d detect_every=%d out=%s",
        video,
        info.frames,
        len(jobs),
        detect_every,
        out,
    )
    return Submitted(info.path, str(out), jobs, merge, parts, finish)
