"""Runs inside the peer's own virtual environment (the `fer` package), never imports FERVI.

    peer-python peer_probe.py INPUT.npz

INPUT holds `frames_1face`, `frames_4faces` (BGR uint8 frames) and `faces`/`labels` (48x48 PublicTest
faces). Prints one JSON object: frames/s of `FER().detect_emotions` (package defaults: Haar cascade and its
quantized TFLite mini-Xception) on each frame set, faces found, and its accuracy on the faces, preprocessed
as `detect_emotions` does (resize to 64x64, scale to -1..1).
"""

import json
import sys
import time

import cv2
import numpy as np
from fer.fer import FER


def frames_per_s(detector, frames):
    detector.detect_emotions(frames[0])
    found = 0
    started = time.perf_counter()
    for frame in frames:
        found += len(detector.detect_emotions(frame))
    return len(frames) / (time.perf_counter() - started), found


def main():
    data = np.load(sys.argv[1])
    detector = FER()
    fps1, found1 = frames_per_s(detector, data["frames_1face"])
    fps4, found4 = frames_per_s(detector, data["frames_4faces"])
    accuracy, predictions = None, []
    if len(data["faces"]):
        faces = np.array([cv2.resize(f, (64, 64)) for f in data["faces"]], np.float32)
        faces = (faces / 255.0 - 0.5) * 2.0
        predictions = np.asarray(detector._classify_emotions(faces)).argmax(axis=1)
        accuracy = round(float((predictions == data["labels"]).mean()), 4)
    print(
        json.dumps(
            {
                "fps_1face": round(fps1, 2),
                "faces_found_1face": int(found1),
                "frames_1face": len(data["frames_1face"]),
                "fps_4faces": round(fps4, 2),
                "faces_found_4faces": int(found4),
                "frames_4faces": len(data["frames_4faces"]),
                "accuracy": accuracy,
                "n": int(len(data["labels"])),
                "predictions": [int(p) for p in predictions],
            }
        )
    )


if __name__ == "__main__":
    main()
