"""Files an offline analysis leaves per video: faces.csv, summary.json, annotated.mp4 and timeline.png."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from fervi.emotions import EMOTIONS

from .video_io import seek

CSV_HEADER = ["frame", "time_s", "track_id", "x", "y", "w", "h", "label", "score", *EMOTIONS]
COLORS = {  # BGR per emotion, for boxes and the timeline
    "angry": (40, 40, 220), "disgust": (40, 140, 60), "fear": (150, 60, 150), "happy": (40, 200, 240),
    "sad": (200, 120, 40), "surprise": (0, 140, 255), "neutral": (180, 180, 180),
}


@dataclass
class FaceRow:
    frame: int
    time_s: float
    track_id: int
    box: np.ndarray  # x, y, w, h
    label: str  # the track's smoothed label
    score: float
    probs: np.ndarray  # raw probabilities of this frame


def write_csv(rows: list[FaceRow], path: Path) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADER)
        for r in rows:
            writer.writerow([r.frame, f"{r.time_s:.3f}", r.track_id, *(int(round(v)) for v in r.box), r.label,
                             f"{r.score:.4f}", *(f"{p:.4f}" for p in r.probs)])
    tmp.replace(path)


def summarize(rows: list[FaceRow], video: dict, frame_step_s: float) -> dict:
    """Duration, fps, faces, share of face-time per emotion, and per track its dominant emotion and timeline."""
    face_time = {e: 0.0 for e in EMOTIONS}
    tracks: dict[int, dict] = {}
    for r in rows:
        face_time[r.label] += frame_step_s
        track = tracks.setdefault(r.track_id, {"id": r.track_id, "start_s": r.time_s, "end_s": r.time_s,
                                               "frames": 0, "seconds": {e: 0.0 for e in EMOTIONS},
                                               "timeline": []})
        track["end_s"] = r.time_s
        track["frames"] += 1
        track["seconds"][r.label] += frame_step_s
        if not track["timeline"] or track["timeline"][-1]["label"] != r.label:
            track["timeline"].append({"start_s": round(r.time_s, 3), "label": r.label})
    total = sum(face_time.values())
    for track in tracks.values():
        track["dominant"] = max(track["seconds"], key=track["seconds"].get)
        track["seconds"] = {e: round(v, 3) for e, v in track["seconds"].items()}
    return {
        **video,
        "face_rows": len(rows),
        "tracks": len(tracks),
        "face_seconds": round(total, 3),
        "emotion_share": {e: round(v / total, 4) if total else 0.0 for e, v in face_time.items()},
        "per_track": sorted(tracks.values(), key=lambda t: t["id"]),
    }


def write_summary(summary: dict, path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(path)


def draw_faces(image: np.ndarray, faces: list[FaceRow]) -> np.ndarray:
    for r in faces:
        x, y, w, h = (int(round(v)) for v in r.box)
        color = COLORS[r.label]
        cv2.rectangle(image, (x, y), (x + w, y + h), color, 2)
        text = f"#{r.track_id} {r.label} {r.score:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        cv2.rectangle(image, (x, max(0, y - th - 6)), (x + tw + 4, y), color, -1)
        cv2.putText(image, text, (x + 2, max(th, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def save_rows(rows: list[FaceRow], analysed: list[int], path: Path) -> None:
    """The tracked rows the annotation parts draw (label and score smoothed; raw probabilities left out)."""
    np.savez(path, analysed=np.array(analysed, np.int64), frame=np.array([r.frame for r in rows], np.int64),
             track=np.array([r.track_id for r in rows], np.int64),
             box=np.array([r.box for r in rows], np.float32).reshape(-1, 4),
             label=np.array([EMOTIONS.index(r.label) for r in rows], np.int64),
             score=np.array([r.score for r in rows], np.float32))


def load_rows(path: Path, fps: float, start: int = 0, stop: int | None = None) -> tuple[list[FaceRow], list[int]]:
    """The saved rows a part [start, stop) draws: from the latest analysed frame at or before `start` on."""
    data = np.load(path)
    analysed = data["analysed"]
    before = analysed[analysed <= start]
    first = int(before.max()) if before.size else start
    end = np.iinfo(np.int64).max if stop is None else stop
    keep = (data["frame"] >= first) & (data["frame"] < end)
    empty = np.zeros(len(EMOTIONS), np.float32)
    rows = [FaceRow(int(f), f / fps, int(t), b, EMOTIONS[int(lab)], float(sc), empty)
            for f, t, b, lab, sc in zip(data["frame"][keep], data["track"][keep], data["box"][keep],
                                        data["label"][keep], data["score"][keep])]
    return rows, analysed[(analysed >= first) & (analysed < end)].tolist()


def faces_at(rows: list[FaceRow], analysed: list[int]):
    """Per frame, the boxes of its latest analysed frame: `shown(frame)` for frames in increasing order."""
    by_frame: dict[int, list[FaceRow]] = {}
    for r in rows:
        by_frame.setdefault(r.frame, []).append(r)
    order = sorted(analysed)
    position = 0
    current: list[FaceRow] = []

    def shown(frame: int) -> list[FaceRow]:
        nonlocal position, current
        while position < len(order) and order[position] <= frame:
            current = by_frame.get(order[position], [])
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


def write_annotated_part(video_path: str, rows: list[FaceRow], analysed: list[int], start: int,
                         stop: int | None, path: Path, fps: float, on_frame=None) -> int:
    """Frames [start, stop) of the video with the boxes of their latest analysed frame, as an H.264 part;
    returns the frames written. Parts of one video join into one file with `join_parts`."""
    import av

    capture = cv2.VideoCapture(video_path)
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    index = seek(capture, video_path, start)
    shown = faces_at(rows, analysed)
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
                frame = av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
            else:
                frame = av.VideoFrame.from_ndarray(image, format="bgr24")
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


def label_spans(rows: list[FaceRow], step: float) -> dict[tuple[int, str], list[tuple[float, float]]]:
    """Per (track, label): the (start, length) runs of consecutive rows, so a long video draws few bars."""
    spans: dict[tuple[int, str], list[tuple[float, float]]] = {}
    open_runs: dict[int, tuple[str, float, float]] = {}  # track -> (label, start, end)

    def close(track_id: int) -> None:
        label, start, end = open_runs.pop(track_id)
        spans.setdefault((track_id, label), []).append((start, end - start))

    for r in rows:
        run = open_runs.get(r.track_id)
        if run and run[0] == r.label and r.time_s - run[2] <= 1.5 * step:
            open_runs[r.track_id] = (run[0], run[1], r.time_s + step)
            continue
        if run:
            close(r.track_id)
        open_runs[r.track_id] = (r.label, r.time_s, r.time_s + step)
    for track_id in list(open_runs):
        close(track_id)
    return spans


def write_timeline(rows: list[FaceRow], duration_s: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    track_ids = sorted({r.track_id for r in rows})
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.45 * max(1, len(track_ids))))
    lane = {t: i for i, t in enumerate(track_ids)}
    step = min((b.time_s - a.time_s for a, b in zip(rows, rows[1:]) if b.time_s > a.time_s), default=0.1)
    for (track_id, label), spans in label_spans(rows, step).items():
        b, g, red = COLORS[label]
        ax.broken_barh(spans, (lane[track_id] - 0.4, 0.8), facecolors=(red / 255, g / 255, b / 255))
    ax.set_yticks(range(len(track_ids)), [f"face #{t}" for t in track_ids])
    ax.set_xlim(0, max(duration_s, step))
    ax.set_xlabel("time (s)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=(c[2] / 255, c[1] / 255, c[0] / 255)) for c in COLORS.values()]
    ax.legend(handles, list(COLORS), ncol=7, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35 if len(track_ids) < 3 else -0.15))
    ax.set_title("Emotion per face over time (smoothed)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
