"""Training data packed to travel to a lent GPU machine: lossless WebP mosaics of the faces plus labels.

The split and the over-sampling index are made here, by `trainer.prepare`, so a run on another machine
(`training/gpu_train.py`) trains on exactly the rows a local run would and validates on the same faces. The
pack only carries them: lossless WebP stores FER-2013's 74 MB of pixels in about 50 MB, under the device
tool's 64 MiB limit, and needs nothing but OpenCV and NumPy to read back.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

FACE = 48
COLUMNS = 256  # faces per mosaic row: 256 * 48 = 12,288 px, under WebP's 16,383 px limit
MAX_FACES = COLUMNS * (16383 // FACE)  # 87,296 faces per mosaic


def _encode(images: np.ndarray) -> bytes:
    n = len(images)
    if n > MAX_FACES:
        raise ValueError(f"{n} faces do not fit one mosaic (at most {MAX_FACES})")
    rows = -(-n // COLUMNS)
    padded = np.zeros((rows * COLUMNS, FACE, FACE), np.uint8)
    padded[:n] = images
    mosaic = padded.reshape(rows, COLUMNS, FACE, FACE).transpose(0, 2, 1, 3).reshape(rows * FACE, COLUMNS * FACE)
    ok, data = cv2.imencode(".webp", mosaic, [cv2.IMWRITE_WEBP_QUALITY, 101])  # above 100: lossless
    if not ok:
        raise RuntimeError("OpenCV could not encode the WebP mosaic")
    return data.tobytes()


def _decode(data: bytes, n: int) -> np.ndarray:
    mosaic = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if mosaic is None:
        raise ValueError("not a readable WebP mosaic")
    rows = mosaic.shape[0] // FACE
    faces = mosaic.reshape(rows, FACE, COLUMNS, FACE).transpose(0, 2, 1, 3).reshape(-1, FACE, FACE)
    return np.ascontiguousarray(faces[:n])


def write_pack(data, folder: str | Path) -> dict:
    """Write a `trainer.PreparedData` to `folder`: one mosaic per split, labels and the over-sampling index."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sets = {"train": data.train, "val": data.val, **{f"holdout_{k}": v for k, v in data.holdouts.items()}}
    if getattr(data, "train_alt", None) is not None:  # framing "both": the training faces in their dataset crops
        sets["train_alt"] = data.train_alt
    arrays = {"train_index": data.train_index.astype(np.int32)}
    for name, faces in sets.items():
        (folder / f"{name}.webp").write_bytes(_encode(faces.images))
        arrays[f"{name}_labels"] = faces.labels.astype(np.int8)
    np.savez(folder / "labels.npz", **arrays)
    # Checked on arrival: the pixels that come back must be the pixels that left.
    manifest = {
        "sets": {name: len(faces) for name, faces in sets.items()},
        "report": data.report,
        "pixel_sums": {name: int(faces.images.sum(dtype=np.int64)) for name, faces in sets.items()},
    }
    (folder / "pack.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def read_pack(folder: str | Path) -> dict[str, np.ndarray]:
    """{name: images, name_labels: labels, train_index: ...} as written; raises if any pixel changed."""
    folder = Path(folder)
    manifest = json.loads((folder / "pack.json").read_text())
    labels = np.load(folder / "labels.npz")
    out: dict[str, np.ndarray] = {"train_index": labels["train_index"].astype(np.int64)}
    for name, n in manifest["sets"].items():
        images = _decode((folder / f"{name}.webp").read_bytes(), n)
        if int(images.sum(dtype=np.int64)) != manifest["pixel_sums"][name]:
            raise ValueError(f"{folder / name}.webp: pixels differ from the ones packed")
        out[name] = images
        out[f"{name}_labels"] = labels[f"{name}_labels"].astype(np.int64)
    return out
