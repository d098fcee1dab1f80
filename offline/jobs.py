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
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from fervi.bus import VIDEO_QUEUE
from fervi.bus.queue import VideoQueue, report_progress, update_running_video
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
class _Pending:
    """An analysed frame waiting to be classified: its faces detected (a keyframe) or interpolated."""

    index: int
    image: np.ndarray
    faces: Faces | None = None  # None until its keyframe, or the next one, is detected


def analyze_segment(video: str, start: int, stop: int | None, every: int, out_file: str, detect_every: int = 1) -> dict:
    """Analyse frames [start, stop) whose index is a multiple of `every`; write them to `out_file` (.npz).

    The detector runs on every `detect_every`-th analysed frame and on the segment's first and last ones
    (a full scan every `FERVI_DETECTOR_FULL_SCAN_S` of video time, following the faces between); the boxes
    between are interpolated (`fervi.vision.keyframes`) and every analysed frame is classified.
    """
    from fervi.vision.keyframes import interpolate
    from fervi.vision.pipeline import FacePipeline

    if Path(out_file).exists() or finished(Path(out_file).parent.parent):
        return _skip(f"segment {start}..{stop}", start=start)
    settings = load_settings()
    pipeline = FacePipeline.from_settings(settings)
    capture = open_file(video)
    if not capture.isOpened():
        raise VideoError(f"{video}: not a readable video")
    total = (stop - start) if stop is not None else max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) - start)
    fps = video_fps(capture)  # a keyframe's video time is the detector's clock (as probe() reads it)
    keyframes = 0  # the keyframes detected so far: consecutive positions of the segment's stream
    index = seek(capture, video, start)
    frames, boxes, scores, probs, counts = [], [], [], [], []
    waiting: list[_Pending] = []  # analysed frames not yet classified, in frame order
    key: _Pending | None = None  # the newest keyframe

    def detect_key(entry: _Pending) -> None:
        """Detect at `entry`, then interpolate the waiting frames between the previous keyframe and it."""
        nonlocal key, keyframes
        # the segment is one stream: the detector scans in full every few keyframes and follows between
        keyframes += 1
        at = entry.index / fps
        entry.faces = pipeline.detect([entry.image], [(f"{video}#{start}", keyframes, at)])[0]
        if key is not None:
            for item in waiting:
                if item.faces is None:
                    item.faces = interpolate(
                        key.faces, entry.faces, (item.index - key.index) / (entry.index - key.index)
                    )
        key = entry

    def flush() -> None:
        for item, faces in zip(
            waiting, pipeline.classify([w.image for w in waiting], [w.faces for w in waiting]), strict=True
        ):
            frames.append(item.index)
            counts.append(len(faces))
            boxes.append(faces.boxes)
            scores.append(faces.scores)
            probs.append(faces.probs)
        waiting.clear()

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
                entry = _Pending(index, image)
                waiting.append(entry)
                if key is None or (index // every) % detect_every == 0:
                    detect_key(entry)
                    if len(waiting) >= BATCH:
                        flush()
            index += 1
            done += 1
            if done % META_EVERY == 0:
                report_progress(done, total)
        if waiting and waiting[-1].faces is None:  # the segment's last frame closes its last gap
            detect_key(waiting[-1])
        if waiting:
            flush()
    finally:
        capture.release()
    if not frames and start == 0:
        raise VideoError(f"{video}: no frame could be decoded")
    out = Path(out_file)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        frames=np.array(frames, np.int64),
        counts=np.array(counts, np.int64),
        boxes=np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32),
        scores=np.concatenate(scores) if scores else np.zeros(0, np.float32),
        probs=np.concatenate(probs) if probs else np.zeros((0, NUM_EMOTIONS), np.float32),
    )
    tmp.replace(out)
    report_progress(done, done)
    return {"start": start, "stop": index, "analysed": len(frames), "faces": int(sum(counts))}


def merge_segments(info: dict, segment_files: list[str], out_dir: str, every: int, detect_every: int = 1) -> dict:
    """Track faces across all segments in frame order; write faces.csv, summary.json, timeline.png and the
    tracked rows the annotation parts draw."""
    if finished(out_dir):
        return _skip("merge")
    settings = load_settings()
    video = VideoInfo(**info)
    # each analysed frame stands for `every` frames of video in face-seconds
    tracker = FaceTracker(
        settings.track_iou, settings.track_max_misses, settings.track_half_life_s, frame_step_s=every / video.fps
    )
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
        on_frame=lambda done: done % META_EVERY or report_progress(done, total),
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
    segments: list  # rq jobs
    merge: object
    parts: list
    finish: object

    @property
    def jobs(self) -> list:
        return [*self.segments, self.merge, *self.parts, self.finish]

    @property
    def ids(self) -> list[str]:
        return [job.id for job in self.jobs]

    @property
    def total(self) -> int:
        """Units of work of all its jobs (frames, and 1 per merge or finish): a video's progress bar."""
        return sum(int(j.meta.get("total", 0)) for j in self.jobs)


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
    common = {"retries": retries, "job_timeout": SEGMENT_TIMEOUT_S, "result_ttl": JOB_RECORD_TTL_S}

    def meta(kind: str, total: int) -> dict:
        return {
            "video": info.path,
            "kind": kind,
            "done": 0,
            "total": total,
            **({"video_id": video_id} if video_id else {}),
        }

    files, jobs = [], []
    for i, (start, stop) in enumerate(bounds):
        file = str((work / f"{i:03d}.npz").resolve())
        files.append(file)
        jobs.append(
            queue.add(
                analyze_segment,
                info.path,
                start,
                stop,
                every,
                file,
                detect_every,
                **common,
                meta=meta("segment", (stop or info.frames) - start),
                description=f"segment {i + 1}/{len(bounds)} of {name}",
            )
        )
    merge = queue.add(
        merge_segments,
        asdict(info),
        files,
        str(out.resolve()),
        every,
        detect_every,
        depends_on=jobs,
        **common,
        meta=meta("merge", 1),
        description=f"merge {name}",
    )
    part_files, parts = [], []
    for i, (start, stop) in enumerate(bounds):
        part = str((work / f"annotated-{i:03d}.mp4").resolve())
        part_files.append(part)
        parts.append(
            queue.add(
                annotate_part,
                asdict(info),
                start,
                stop,
                str(out.resolve()),
                part,
                depends_on=merge,
                **common,
                meta=meta("annotate", (stop or info.frames) - start),
                description=f"annotate part {i + 1}/{len(bounds)} of {name}",
            )
        )
    finish = queue.add(
        finish_video,
        part_files,
        str(out.resolve()),
        depends_on=parts,
        **common,
        meta=meta("finish", 1),
        description=f"finish {name}",
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
