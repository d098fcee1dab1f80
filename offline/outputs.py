"""Files an offline analysis leaves per video: faces.csv, summary.json, annotated.mp4 and timeline.png, all
written from the tracker's own output (`FrameTracks`, `Track`), as the live tracker's statistics are."""

from __future__ import annotations

import csv
import json
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np

from fervi.emotions import EMOTIONS
from fervi.faces import Faces
from fervi.tracking import FrameTracks, Track
from fervi.vision.video import open_file

from .video_io import seek

CSV_HEADER = ["frame", "time_s", "track_id", "x", "y", "w", "h", "label", "score", "runner_up", "uncertain", *EMOTIONS]
UNCERTAIN_COLOR = (150, 150, 150)  # BGR: a face whose label does not clearly lead (drawn "neutral / sad ?")
COLORS = {  # BGR per emotion, for boxes and the timeline
    "angry": (40, 40, 220),
    "disgust": (40, 140, 60),
    "fear": (150, 60, 150),
    "happy": (40, 200, 240),
    "sad": (200, 120, 40),
    "surprise": (0, 140, 255),
    "neutral": (180, 180, 180),
}


def write_csv(frames: list[FrameTracks], path: Path) -> None:
    """One row per tracked face: frame, time, track, box, the track's smoothed label and score, its second
    emotion and whether the label is uncertain (leads it by less than FERVI_UNCERTAIN_MARGIN), and the frame's
    raw probabilities."""
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADER)
        for frame in frames:
            faces = frame.faces
            columns = (faces.tracked_ids.tolist(), faces.boxes, faces.shown(), faces.classified_probs)
            for track_id, box, item, probs in zip(*columns, strict=True):
                writer.writerow(
                    [
                        frame.seq,
                        f"{frame.ts:.3f}",
                        track_id,
                        *(int(round(v)) for v in box),
                        item["label"],
                        f"{item['score']:.4f}",
                        item["runner_up"],
                        int(item["uncertain"]),
                        *(f"{p:.4f}" for p in probs),
                    ]
                )
    tmp.replace(path)


def summarize(frames: list[FrameTracks], tracks: list[Track], video: dict) -> dict:
    """Duration, fps, faces, share of face-time per emotion, and per track its dominant emotion, seconds per
    emotion (the tracker's own statistics, as the live tracker reports them) and label timeline."""
    timelines: dict[int, list[dict]] = {}
    for frame in frames:
        for track_id, label in zip(frame.faces.tracked_ids.tolist(), frame.faces.labels, strict=True):
            timeline = timelines.setdefault(track_id, [])
            if not timeline or timeline[-1]["label"] != label:
                timeline.append({"start_s": round(frame.ts, 3), "label": label})
    face_time = np.sum([t.emotion_seconds for t in tracks], axis=0) if tracks else np.zeros(len(EMOTIONS))
    total = float(face_time.sum())
    per_track = [
        {
            "id": t.id,
            "start_s": t.started_at,
            "end_s": t.last_seen,
            "frames": t.frames,
            "seconds": {e: round(float(v), 3) for e, v in zip(EMOTIONS, t.emotion_seconds, strict=True)},
            "timeline": timelines.get(t.id, []),
            "dominant": t.dominant,
        }
        for t in sorted(tracks, key=lambda t: t.id)
    ]
    return {
        **video,
        "face_rows": sum(len(frame.faces) for frame in frames),
        "tracks": len(tracks),
        "face_seconds": round(total, 3),
        "emotion_share": {
            e: round(float(v) / total, 4) if total else 0.0 for e, v in zip(EMOTIONS, face_time, strict=True)
        },
        "per_track": per_track,
    }


def write_summary(summary: dict, path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(path)


def draw_faces(image: np.ndarray, faces: Faces) -> np.ndarray:
    for box, track_id, item in zip(faces.boxes, faces.tracked_ids.tolist(), faces.shown(), strict=True):
        x, y, w, h = (int(round(v)) for v in box)
        label, score = item["label"], item["score"]
        color = UNCERTAIN_COLOR if item["uncertain"] else COLORS[label]
        cv2.rectangle(image, (x, y), (x + w, y + h), color, 1 if item["uncertain"] else 2)
        text = (
            f"#{track_id} {label} / {item['runner_up']} ?" if item["uncertain"] else f"#{track_id} {label} {score:.2f}"
        )
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        cv2.rectangle(image, (x, max(0, y - th - 6)), (x + tw + 4, y), color, -1)
        cv2.putText(image, text, (x + 2, max(th, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def save_frames(frames: list[FrameTracks], path: Path) -> None:
    """The tracked faces the annotation parts draw (boxes, track ids, smoothed probabilities), every
    analysed frame's index included (a frame with no face clears the boxes)."""
    faces = [f.faces for f in frames]
    np.savez(
        path,
        analysed=np.array([f.seq for f in frames], np.int64),
        counts=np.array([len(f) for f in faces], np.int64),
        box=np.concatenate([f.boxes for f in faces]) if faces else np.zeros((0, 4), np.float32),
        track=np.concatenate([f.track_ids for f in faces]) if faces else np.zeros(0, np.int64),
        smooth=np.concatenate([f.smoothed for f in faces]) if faces else np.zeros((0, len(EMOTIONS)), np.float32),
    )


def load_frames(path: Path, fps: float, start: int = 0, stop: int | None = None) -> list[FrameTracks]:
    """The saved frames a part [start, stop) draws: from the latest analysed frame at or before `start` on."""
    data = np.load(path)
    analysed, counts = data["analysed"], data["counts"]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    before = analysed[analysed <= start]
    first = int(before.max()) if before.size else start
    end = np.iinfo(np.int64).max if stop is None else stop
    out = []
    for i in np.flatnonzero((analysed >= first) & (analysed < end)):
        rows = slice(offsets[i], offsets[i + 1])
        faces = Faces(data["box"][rows], np.ones(counts[i], np.float32), None).tracked(
            data["track"][rows], data["smooth"][rows]
        )
        out.append(FrameTracks(int(analysed[i]), analysed[i] / fps, 0.0, faces, [], []))
    return out


def faces_at(frames: list[FrameTracks]):
    """Per video frame, the faces of its latest analysed frame: `shown(frame)` for frames in increasing order."""
    order = sorted(frames, key=lambda f: f.seq)
    position = 0
    current = Faces().tracked([], [])

    def shown(index: int) -> Faces:
        nonlocal position, current
        while position < len(order) and order[position].seq <= index:
            current = order[position].faces
            position += 1
        return current

    return shown


def _h264_stream(container, fps: float, width: int, height: int):
    """H.264 (browsers play it) without B-frames, so parts can be joined by copying packets."""
    h264 = width % 2 == 0 and height % 2 == 0
    stream = container.add_stream("libx264" if h264 else "mpeg4", rate=Fraction(fps).limit_denominator(100000))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = {"preset": "superfast", "crf": "23", "bf": "0"}
    if h264:
        # No look-ahead: 1.9 instead of 2.45 ms a 640x480 frame here, same size; ultrafast: 1.5 ms, 2.6x the size.
        stream.options["tune"] = "zerolatency"
    stream.codec_context.thread_count = 1  # one RQ worker, one core
    return stream


def write_annotated_part(
    video_path: str, frames: list[FrameTracks], start: int, stop: int | None, path: Path, fps: float, on_frame=None
) -> int:
    """Frames [start, stop) of the video with the boxes of their latest analysed frame, as an H.264 part;
    returns the frames written. Parts of one video join into one file with `join_parts`."""
    import av

    capture = open_file(video_path)
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    index = seek(capture, video_path, start)
    shown = faces_at(frames)
    tmp = path.with_name(path.stem + ".tmp.mp4")
    container = av.open(str(tmp), "w")
    stream = _h264_stream(container, fps, width, height)
    # OpenCV's BGR -> I420 is 0.55 ms a 640x480 frame quicker than the encoder's own conversion; it needs the
    # even sides that made `_h264_stream` choose libx264
    i420 = stream.codec_context.name == "libx264"
    written = 0
    try:
        while stop is None or index < stop:
            ok, image = capture.read()
            if not ok:
                break
            image = draw_faces(image, shown(index))
            if i420:
                pixels, pixel_format = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), "yuv420p"
            else:
                pixels, pixel_format = image, "bgr24"
            # cv2's stubs type every image as MatLike (any integer or float dtype); a decoded frame is uint8
            frame = av.VideoFrame.from_ndarray(pixels, format=pixel_format)  # type: ignore[arg-type]
            frame.pts = written
            container.mux(stream.encode(frame))
            written += 1
            index += 1
            if on_frame:
                on_frame(written)
        container.mux(stream.encode(None))
    finally:
        capture.release()
        container.close()
    tmp.replace(path)
    return written


def join_parts(parts: list[Path], path: Path) -> int:
    """One video from the parts, packets copied (no re-encoding), timestamps shifted part by part."""
    import av

    tmp = path.with_name(path.stem + ".tmp.mp4")
    packets = 0
    with av.open(str(tmp), "w", options={"movflags": "faststart"}) as out:
        stream = None
        offset = Fraction(0)  # seconds of video written so far
        for part in parts:
            with av.open(str(part)) as source:
                src = source.streams.video[0]
                if stream is None:
                    stream = out.add_stream_from_template(src)
                end = offset
                for packet in source.demux(src):
                    if packet.dts is None:  # the demuxer's end-of-stream marker
                        continue
                    # any other packet of an MP4 part (`write_annotated_part`'s) has its timestamps
                    assert packet.pts is not None and packet.duration is not None
                    shift = round(offset / packet.time_base)
                    packet.pts += shift
                    packet.dts += shift
                    end = max(end, (packet.pts + packet.duration) * packet.time_base)
                    packet.stream = stream
                    out.mux(packet)
                    packets += 1
                offset = end
    tmp.replace(path)
    return packets


def label_spans(frames: list[FrameTracks], step: float) -> dict[tuple[int, str], list[tuple[float, float]]]:
    """Per (track, label): the (start, length) runs of consecutive frames, so a long video draws few bars."""
    spans: dict[tuple[int, str], list[tuple[float, float]]] = {}
    open_runs: dict[int, tuple[str, float, float]] = {}  # track -> (label, start, end)

    def close(track_id: int) -> None:
        label, start, end = open_runs.pop(track_id)
        spans.setdefault((track_id, label), []).append((start, end - start))

    for frame in frames:
        for track_id, label in zip(frame.faces.tracked_ids.tolist(), frame.faces.labels, strict=True):
            run = open_runs.get(track_id)
            if run and run[0] == label and frame.ts - run[2] <= 1.5 * step:
                open_runs[track_id] = (run[0], run[1], frame.ts + step)
                continue
            if run:
                close(track_id)
            open_runs[track_id] = (label, frame.ts, frame.ts + step)
    for track_id in list(open_runs):
        close(track_id)
    return spans


def timeline_figure(frames: list[FrameTracks], duration_s: float):
    """One lane per track, a bar per run of one smoothed label; the legend sits between title and lanes, clear
    of the time axis and its label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    track_ids = sorted({t for frame in frames for t in frame.faces.tracked_ids.tolist()})
    fig, ax = plt.subplots(figsize=(10, 1.9 + 0.45 * max(1, len(track_ids))))
    lane = {t: i for i, t in enumerate(track_ids)}
    faced = [f for f in frames if len(f.faces)]  # a bar is as wide as the closest analysed frames with faces
    step = min((b.ts - a.ts for a, b in pairwise(faced) if b.ts > a.ts), default=0.1)
    for (track_id, label), spans in label_spans(frames, step).items():
        b, g, red = COLORS[label]
        ax.broken_barh(spans, (lane[track_id] - 0.4, 0.8), facecolors=(red / 255, g / 255, b / 255))
    ax.set_yticks(range(len(track_ids)), [f"face #{t}" for t in track_ids])
    ax.set_xlim(0, max(duration_s, step))
    ax.set_xlabel("time (s)")
    handles = [Rectangle((0, 0), 1, 1, color=(c[2] / 255, c[1] / 255, c[0] / 255)) for c in COLORS.values()]
    ax.legend(handles, list(COLORS), ncol=7, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.01), frameon=False)
    ax.set_title("Emotion per face over time (smoothed)", pad=30)
    fig.tight_layout()
    return fig


def write_timeline(frames: list[FrameTracks], duration_s: float, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = timeline_figure(frames, duration_s)
    fig.savefig(path, dpi=100)
    plt.close(fig)
