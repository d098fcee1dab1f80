"""Face-time against the share of frames processed: one real face stream tracked at 100%, 50% and 20% of its
frames (evenly), and with a 3 s stretch of no frames (a starved camera).

    python -m fervi.bench.face_time [--videos DIR] [--out bench/results/face_time.json]

The stream: the two shared videos of real people (neutral to angry, 30 fps) played forward and back, five
times (46 s), each frame detected and classified once by the workers' pipeline, its largest face kept (the
same stream as tests/test_face_time.py). Prints one JSON object and writes it to --out.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import cv2
import numpy as np
from fervi.bench.harness import machine_info

from fervi.emotions import EMOTIONS
from fervi.faces import Faces
from fervi.settings import load_settings
from fervi.tracking import FaceTracker
from fervi.vision.pipeline import FacePipeline

VIDEOS = ("neutral_to_angry_1.avi", "neutral_to_angry_2.avi")
FPS = 30.0


def recorded_stream(folder: Path) -> list[Faces]:
    pipeline = FacePipeline.from_settings(load_settings())
    clips = []
    for name in VIDEOS:
        capture, frames = cv2.VideoCapture(str(folder / name)), []
        while (read := capture.read())[0]:
            frames.append(read[1])
        clips.append([largest(faces) for faces in pipeline.analyze(frames)])
    return [faces for clip in clips for faces in (*clip, *reversed(clip))] * 5


def largest(faces: Faces) -> Faces:
    if not len(faces):
        return faces
    i = faces.largest()
    return Faces(faces.boxes[i : i + 1], faces.scores[i : i + 1], faces.classified_probs[i : i + 1])


def tracked(stream: list[Faces], keep_every: int, hole: tuple[float, float] | None = None) -> dict:
    tracker = FaceTracker.from_settings(load_settings())
    seconds, tracks, unobserved = np.zeros(len(EMOTIONS)), 0, 0.0
    for seq in range(0, len(stream), keep_every):
        if hole and hole[0] <= seq / FPS < hole[1]:
            continue
        frame = tracker.update(seq, seq / FPS, stream[seq])
        seconds += frame.emotion_seconds
        tracks += len(frame.started)
        unobserved += frame.unobserved
    return {
        "frames_processed": len(range(0, len(stream), keep_every)),
        "face_seconds": {e: round(float(v), 2) for e, v in zip(EMOTIONS, seconds, strict=True)},
        "face_seconds_total": round(float(seconds.sum()), 2),
        "tracks": tracks,
        "not_observed_s": round(unobserved, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=Path, default=Path("../shared/data/videos"))
    parser.add_argument("--out", default="bench/results/face_time.json")
    args = parser.parse_args()
    stream = recorded_stream(args.videos)
    report = {
        "date": date.today().isoformat(),
        "machine": machine_info(),
        "stream_s": round(len(stream) / FPS, 1),
        "processed_100pct": tracked(stream, 1),
        "processed_50pct": tracked(stream, 2),
        "processed_20pct": tracked(stream, 5),
        "processed_100pct_no_frames_8_to_11s": tracked(stream, 1, (8.0, 11.0)),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}))


if __name__ == "__main__":
    main()
