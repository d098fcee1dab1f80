"""Label sequences of real videos through the live chain: detect, crop, classify, track and smooth.

For each video: the raw label of the largest face per frame and the tracker's smoothed label, as runs
(`neutral x12, angry x55`), and how long the smoothed label lags each change of the raw one (the
tracker's half-life bounds it). Prints JSON; `--save` writes it under bench/results/.

    python bench/talking_faces.py ../shared/data/videos/*.avi [--save]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import date
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fervi.emotions import EMOTIONS  # noqa: E402
from fervi.settings import load_settings  # noqa: E402
from fervi.tracking import FaceTracker  # noqa: E402
from fervi.vision.pipeline import FacePipeline  # noqa: E402


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
        if raw[i] != raw[i - 1] and raw[i:i + 5] == [raw[i]] * 5 and raw[i] != "-":
            follow = next((j for j in range(i, len(smooth)) if smooth[j] == raw[i]), None)
            if follow is not None:
                out.append(round((follow - i) / fps, 3))
    return out


def video_labels(path: Path, pipeline: FacePipeline, settings) -> dict:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    tracker = FaceTracker(settings.track_iou, settings.track_max_misses, settings.track_half_life_s)
    raw, smooth, seq = [], [], 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        faces = pipeline.analyze([frame])[0]
        tracks = tracker.update(seq, seq / fps, faces)
        if len(faces):
            biggest = faces.largest()  # the tracker keeps the order of the faces it is given
            raw.append(EMOTIONS[int(np.argmax(faces.probs[biggest]))])
            smooth.append(tracks.faces.labels[biggest])
        else:
            raw.append("-")
            smooth.append("-")
        seq += 1
    return {"video": path.name, "frames": seq, "fps": fps, "faces_found": sum(r != "-" for r in raw),
            "raw": runs(raw), "smoothed": runs(smooth), "first_label": smooth[0] if smooth else None,
            "smoothing_lag_s": lags_s(raw, smooth, fps), "half_life_s": settings.track_half_life_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="+", type=Path)
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args()
    settings = load_settings()
    pipeline = FacePipeline.from_settings(settings)
    result = {"bench": "talking_faces", "date": date.today().isoformat(), "machine": platform.platform(),
              "detector": settings.detector, "margin": settings.face_margin,
              "videos": [video_labels(path, pipeline, settings) for path in args.videos]}
    text = json.dumps(result, indent=2)
    print(text)
    if args.save:
        path = Path(__file__).resolve().parent / "results" / f"talking_faces-{result['date']}.json"
        path.write_text(text + "\n")


if __name__ == "__main__":
    main()
