"""`fervi evaluate --images`: the whole chain (decode, detect, crop, classify) on a user's labelled photos.

Labels come from one folder per emotion (`happy/`, `anger/`, ... as `datasets.FOLDER_LABELS` knows them) or
from a CSV of `path,label` rows (paths relative to the CSV; labels by name or FER id). Each photo is taken
to show one labelled person: the largest face found is theirs. A photo without a face counts as a miss
(wrong); an unreadable file is named and skipped. Results are also given per face-width bucket.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fervi.emotions import EMOTIONS
from fervi.vision.images import ImageError, decode_image, read_image_file

from .datasets import CONTEMPT, FOLDER_LABELS, IMAGE_SUFFIXES, DatasetError
from .evaluation import classification_metrics
from .figures import confusion_matrix_png

# Face widths (px) a result is grouped by: [lower, upper).
WIDTH_BUCKETS = ((0, 48), (48, 96), (96, 192), (192, 384), (384, 10**9))


@dataclass
class LabelledImage:
    path: Path
    label: int


def _label_id(text: str, where: str) -> int:
    text = text.strip().lower()
    if text.isdigit() and int(text) < len(EMOTIONS):
        return int(text)
    if text in FOLDER_LABELS:
        return FOLDER_LABELS[text]
    raise DatasetError(f"{where}: unknown emotion {text!r} (expected one of {', '.join(EMOTIONS)} or 0..6)")


def labelled_images(source: str | Path) -> list[LabelledImage]:
    """The photos and labels of a folder of emotion folders, or of a `path,label` CSV."""
    source = Path(source)
    if source.is_file():
        out = []
        with open(source, newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.reader(handle), 1):
                if not row or (number == 1 and row[0].strip().lower() == "path"):
                    continue
                if len(row) < 2:
                    raise DatasetError(f"{source}:{number}: expected path,label")
                out.append(LabelledImage(source.parent / row[0].strip(), _label_id(row[1], f"{source}:{number}")))
        return out
    if not source.is_dir():
        raise DatasetError(f"{source}: no such file or folder")
    out = []
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        name = folder.name.lower()
        if name == CONTEMPT:  # `skipped_folders` names it
            continue
        if name not in FOLDER_LABELS:
            raise DatasetError(f"{folder}: folder name is not an emotion ({', '.join(EMOTIONS)})")
        out += [
            LabelledImage(p, FOLDER_LABELS[name])
            for p in sorted(folder.iterdir())
            if p.suffix.lower() in IMAGE_SUFFIXES | {".webp", ".tif", ".tiff"}
        ]
    if not out:
        raise DatasetError(f"{source}: no images in emotion folders (e.g. {source}/happy/photo.jpg)")
    return out


def skipped_folders(source: str | Path) -> list[str]:
    """The folders of a folder of emotion folders that are left out, and why (contempt: not one of the seven)."""
    source = Path(source)
    if not source.is_dir():
        return []
    return [
        f"{folder}: contempt is not one of the seven emotions FERVI tells apart"
        for folder in sorted(p for p in source.iterdir() if p.is_dir())
        if folder.name.lower() == CONTEMPT
    ]


def evaluate_images(
    source: str,
    pipeline,
    max_pixels: int,
    max_bytes: int,
    confusion_png: str,
    progress: Callable[[list[LabelledImage]], Iterable[LabelledImage]] = iter,
) -> dict:
    """The report of the whole chain on the labelled photos of `source`; `progress` wraps the photos as they
    are gone through (the command line's bar)."""
    items = labelled_images(source)
    unreadable, truth, predicted, widths, found_probs = [], [], [], [], []
    for item in progress(items):
        try:
            image = decode_image(read_image_file(item.path, max_bytes), max_pixels)
        except (OSError, ImageError) as err:
            unreadable.append({"path": str(item.path), "error": getattr(err, "strerror", None) or str(err)})
            continue
        faces = pipeline.analyze([image])[0]
        truth.append(item.label)
        if len(faces.boxes) == 0:
            predicted.append(-1)
            widths.append(0.0)
            continue
        biggest = int(np.argmax(faces.boxes[:, 2] * faces.boxes[:, 3]))
        predicted.append(int(np.argmax(faces.probs[biggest])))
        widths.append(float(faces.boxes[biggest, 2]))
        found_probs.append(faces.probs[biggest])
    if not truth:
        raise DatasetError(f"{source}: none of the {len(items)} images could be read")
    truth_a, predicted_a, widths_a = np.array(truth), np.array(predicted), np.array(widths)
    found = predicted_a >= 0
    metrics = classification_metrics(truth_a[found], np.array(found_probs).reshape(-1, len(EMOTIONS)))
    per_class_recall = {
        name: round(float(np.mean(predicted_a[truth_a == i] == i)), 4) if np.any(truth_a == i) else None
        for i, name in enumerate(EMOTIONS)
    }
    buckets = []
    for low, high in WIDTH_BUCKETS:
        inside = found & (widths_a >= low) & (widths_a < high)
        if inside.any():
            buckets.append(
                {
                    "face_width_px": f"{low}-{high if high < 10**9 else ''}",
                    "faces": int(inside.sum()),
                    "accuracy": round(float(np.mean(predicted_a[inside] == truth_a[inside])), 4),
                }
            )
    png = confusion_matrix_png(
        metrics["confusion"],
        Path(confusion_png),
        f"{Path(source).name}: {int(found.sum())} faces found in {len(truth)} images",
    )
    return {
        "source": str(source),
        "images": len(items),
        "unreadable": unreadable,
        "skipped_folders": skipped_folders(source),
        "evaluated": len(truth),
        "faces_found": int(found.sum()),
        "found_rate": round(float(found.mean()), 4),
        "accuracy": round(float(np.mean(predicted_a == truth_a)), 4),  # a photo without a face is wrong
        "accuracy_of_found": round(metrics["accuracy"], 4),
        "macro_f1_of_found": round(metrics["macro_f1"], 4),
        "per_class_recall": per_class_recall,
        "per_class_of_found": metrics["per_class"],
        "confusion_of_found": metrics["confusion"],
        "by_face_width": buckets,
        "confusion_png": str(png),
    }
