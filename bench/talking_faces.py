"""Label sequences of real videos through the live chain: detect, crop, classify, track and smooth.

For each video: the raw label of the largest face per frame and the tracker's smoothed label, as runs
(`neutral x12, angry x55`; an uncertain smoothed label as `neutral/sad?`), and how long the smoothed label
lags each change of the raw one (the tracker's half-life bounds it). To re-check the acting challenge's
rules and the smoothing half-life on real faces it also reports, per half-life tried: smoothed label
changes per face-second, the share of face-time shown uncertain, and when each emotion's smoothed
probability first stayed at the challenge threshold for its hold time. `--demo` adds the demo camera's
footage (the two wheel photos gliding). Prints JSON; `--save` writes it under bench/results/.

    python bench/talking_faces.py ../shared/data/videos/*.avi [--demo] [--save]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import date
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fervi.emotions import EMOTIONS, leading_two, uncertain_margin  # noqa: E402 - after sys.path: the bench runs as a script from a checkout
from fervi.settings import load_settings  # noqa: E402 - after sys.path: the bench runs as a script from a checkout
from fervi.tracking import FaceTracker  # noqa: E402 - after sys.path: the bench runs as a script from a checkout
from fervi.vision.pipeline import FacePipeline  # noqa: E402 - after sys.path: the bench runs as a script from a checkout


def runs(labels: list[str]) -> list[str]:
    out: list[list] = []
    for label in labels:
        if out and out[-1][0] == label:
            out[-1][1] += 1
        else:
            out.append([label, 1])
    return [f"{label} x{count}" for label, count in out]


def lags_s(raw: list[str], smooth: list[str], fps: float) -> list[float]:
    """For each lasting change of the raw label (held 5+ frames), seconds until the smoothed label follows."""
    out = []
    for i in range(1, len(raw)):
        if raw[i] != raw[i - 1] and raw[i : i + 5] == [raw[i]] * 5 and raw[i] != "-":
            follow = next((j for j in range(i, len(smooth)) if smooth[j] == raw[i]), None)
            if follow is not None:
                out.append(round((follow - i) / fps, 3))
    return out


HALF_LIVES_S = (0.25, 0.5, 1.0)


def shown(probs: np.ndarray) -> str:
    """What a page shows for smoothed probabilities: the label, or `first/second?` when uncertain."""
    first, second, lead = leading_two(probs)
    return f"{EMOTIONS[first]}/{EMOTIONS[second]}?" if lead < uncertain_margin() else EMOTIONS[first]


def held_at(probs: list, fps: float, threshold: float, hold_s: float) -> dict:
    """Per emotion, the first second at which its probability had stayed >= threshold for hold_s (the
    challenge's rule), or None."""
    out: dict[str, float | None] = {}
    for i, emotion in enumerate(EMOTIONS):
        run = 0
        out[emotion] = None
        for k, p in enumerate(probs):
            run = run + 1 if p is not None and p[i] >= threshold else 0
            if run / fps >= hold_s:
                out[emotion] = round(k / fps, 2)
                break
    return out


def analyse_frames(frames, pipeline: FacePipeline) -> list:
    """Each frame's faces, detected and classified once (the tracker runs on them at every half-life)."""
    return [pipeline.analyze([frame])[0] for frame in frames]


def track_frames(analysed: list, fps: float, settings, half_life_s: float):
    """Raw and smoothed probabilities of the largest face per frame (None where no face)."""
    tracker = FaceTracker.from_settings(settings.replace(track_half_life_s=half_life_s))
    raw, smooth = [], []
    for seq, faces in enumerate(analysed):
        tracks = tracker.update(seq, seq / fps, faces)
        if len(faces):
            biggest = faces.largest()  # the tracker keeps the order of the faces it is given
            raw.append(faces.probs[biggest])
            smooth.append(tracks.faces.label_probs[biggest])  # the track's smoothed probabilities
        else:
            raw.append(None)
            smooth.append(None)
    return raw, smooth


def video_labels(name: str, frames: list, fps: float, pipeline: FacePipeline, settings) -> dict:
    from fervi.dashboard.challenge import SCORED

    per_half_life = {}
    analysed = analyse_frames(frames, pipeline)
    for half_life in HALF_LIVES_S:
        raw_p, smooth_p = track_frames(analysed, fps, settings, half_life)
        raw = [EMOTIONS[int(np.argmax(p))] if p is not None else "-" for p in raw_p]
        smooth = [EMOTIONS[int(np.argmax(p))] if p is not None else "-" for p in smooth_p]
        face_s = sum(p is not None for p in raw_p) / fps
        per_half_life[str(half_life)] = {
            "smoothed_changes_per_face_s": round(
                sum(a != b for a, b in pairwise(smooth) if "-" not in (a, b)) / face_s, 3
            )
            if face_s
            else None,
            "uncertain_share": round(float(np.mean([shown(p).endswith("?") for p in smooth_p if p is not None])), 3)
            if face_s
            else None,
            "challenge_held_at_s": held_at(smooth_p, fps, SCORED.threshold, SCORED.hold_s),
        }
        if half_life == settings.track_half_life_s:
            result = {
                "video": name,
                "frames": len(frames),
                "fps": fps,
                "faces_found": sum(r != "-" for r in raw),
                "raw": runs(raw),
                "smoothed": runs(smooth),
                "shown": runs([shown(p) if p is not None else "-" for p in smooth_p]),
                "first_label": smooth[0] if smooth else None,
                "last_label": smooth[-1] if smooth else None,
                "smoothing_lag_s": lags_s(raw, smooth, fps),
                "half_life_s": half_life,
                "raw_changes_per_face_s": round(sum(a != b for a, b in pairwise(raw) if "-" not in (a, b)) / face_s, 3)
                if face_s
                else None,
            }
    result["challenge_rules"] = {"threshold": SCORED.threshold, "hold_s": SCORED.hold_s}
    result["by_half_life"] = per_half_life
    return result


def read_video(path: Path) -> tuple[list, float]:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    return frames, fps


def demo_footage(seconds: float = 8.0, fps: float = 15.0) -> dict[str, tuple[list, float]]:
    """The demo camera's footage (`fervi.demo`: the two wheel photos gliding, one per row), cut into its top
    row (the astronaut) and bottom row (Grace Hopper), so each face is measured on its own."""
    from fervi.demo import render_frame

    total = int(seconds * fps)
    frames = [render_frame(i, total, faces=2) for i in range(total)]
    half = frames[0].shape[0] // 2
    return {
        "demo camera: astronaut": ([f[:half].copy() for f in frames], fps),
        "demo camera: Grace Hopper": ([f[half:].copy() for f in frames], fps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="+", type=Path)
    parser.add_argument("--demo", action="store_true", help="add the demo camera's footage")
    parser.add_argument("--save", action="store_true")
    parser.add_argument("--tag", default="", help="a word for the saved file's name (e.g. the model measured)")
    args = parser.parse_args()
    settings = load_settings()
    pipeline = FacePipeline.from_settings(settings)
    videos = [video_labels(path.name, *read_video(path), pipeline, settings) for path in args.videos]
    if args.demo:
        videos += [video_labels(name, *footage, pipeline, settings) for name, footage in demo_footage().items()]
    result = {
        "bench": "talking_faces",
        "date": date.today().isoformat(),
        "machine": platform.platform(),
        "detector": settings.detector,
        "margin": settings.face_margin,
        "model_dir": settings.models,
        "uncertain_margin": uncertain_margin(),
        "videos": videos,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.save:
        tag = f"-{args.tag}" if args.tag else ""
        path = Path(__file__).resolve().parent / "results" / f"talking_faces-{result['date']}{tag}.json"
        path.write_text(text + "\n")


if __name__ == "__main__":
    main()
