"""Demo footage made from real face photos that ship in wheels (scikit-image's astronaut, matplotlib's
Grace Hopper): faces that move across a canvas, for `fervi up`'s demo camera, tests and benchmarks.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the demo faces come from the package {name!r}: pip install it")
    return Path(next(iter(spec.submodule_search_locations)))


def face_photo_paths() -> list[Path]:
    return [
        package_dir("skimage") / "data" / "astronaut.png",
        package_dir("matplotlib") / "mpl-data" / "sample_data" / "grace_hopper.jpg",
    ]


def face_photos() -> list[np.ndarray]:
    """The two photos as BGR images."""
    out = []
    for path in face_photo_paths():
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise RuntimeError(f"cannot read demo photo {path}")
        out.append(image)
    return out


# Head-and-shoulders crops (x, y, w, h) of each photo, so each face is a sizeable part of its tile.
PORTRAIT_CROPS = [(110, 20, 230, 260), (100, 60, 330, 380)]


def portraits(height: int = 200) -> list[np.ndarray]:
    out = []
    for image, (x, y, w, h) in zip(face_photos(), PORTRAIT_CROPS, strict=True):
        crop = image[y : y + h, x : x + w]
        out.append(cv2.resize(crop, (round(w * height / h), height), interpolation=cv2.INTER_AREA))
    return out


def render_frame(
    index: int, total: int, width: int = 640, height: int = 480, faces: int = 2, seamless: bool = False
) -> np.ndarray:
    """One frame: `faces` portraits gliding across a plain background; positions depend only on index.

    Faces sit in two rows (top row moving right, bottom row moving left) and in ceil(faces / 2) columns,
    so they pass each other without ever overlapping. `seamless`: they glide there and back, so a clip
    played in a loop never jumps (a looping demo camera keeps its faces' track ids).
    """
    canvas = np.full((height, width, 3), (60, 70, 80), np.uint8)
    tiles = portraits(max(48, int(height * 0.42)))
    t = (1 - np.cos(2 * np.pi * index / total)) / 2 if seamless else index / max(1, total - 1)
    columns = max(1, (faces + 1) // 2)
    segment = width // columns
    for k in range(faces):
        tile = tiles[k % len(tiles)]
        th, tw = tile.shape[:2]
        tw = min(tw, segment)
        row, column = k % 2, k // 2
        travel = max(0, segment - tw)
        offset = int((t if row == 0 else 1 - t) * travel)
        x = column * segment + offset
        y = 10 + row * max(0, height - th - 20)
        canvas[y : y + th, x : x + tw] = tile[:, :tw]
    return canvas


def write_video(
    path: str | Path,
    frames: int = 60,
    fps: float = 15.0,
    width: int = 640,
    height: int = 480,
    faces: int = 2,
    seamless: bool = False,
) -> Path:
    """An MP4 (mp4v) of `frames` frames; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write video {path}")
    try:
        for i in range(frames):
            writer.write(render_frame(i, frames, width, height, faces, seamless))
    finally:
        writer.release()
    return path
