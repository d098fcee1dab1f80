"""Faces at every distance: found rate, label accuracy, false faces and ms per frame, per face width.

Real faces (CK+48 subjects, FER-2013 PublicTest faces, the photos shipped in scikit-image/matplotlib) are
pasted into real face-free photos at widths 32-512 px in 640x480, 1280x720 and 1920x1080 frames, with
and without a hand over the mouth; the face-free photos alone count false faces. Every frame goes
through the whole chain that workers run (detect, crop, classify); each found face is also classified at
the crop margin -0.1 and +0.1, and the share of those labels that differ is the margin flip rate. Labels are
scored against the faces' original labels and against people (the FER+ crowd's majority for FER-2013 faces,
when the votes file is beside the CSV; CK+'s posed label), with per-class recall per source. Prints JSON;
`--save` writes it.

    python bench/face_distances.py --data ../shared/data [--faces 60] [--detector multiscale] [--save]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fervi.bench.distance_scenes import (  # noqa: E402 - after sys.path: the bench runs as a script from a checkout
    FACE_FREE_PHOTOS,
    FRAME_SIZES,
    WIDTHS,
    background,
    face_free_scenes,
    gray_faces,
    match,
    paste,
    photo_faces,
)

from fervi.settings import load_settings  # noqa: E402 - after sys.path: the bench runs as a script from a checkout
from fervi.vision.pipeline import FacePipeline  # noqa: E402 - after sys.path: the bench runs as a script from a checkout


def real_faces(data: Path, count: int, rng: np.random.Generator) -> list:
    """`count` labelled faces, half CK+ and half FER-2013 PublicTest, plus the two wheel photos."""
    from fervi.training.datasets import load_ckplus, load_fer_csv

    faces = []
    ck_dir, fer_csv = data / "ckplus48", data / "fer2013" / "fer2013.csv.gz"
    if ck_dir.is_dir():
        ck = load_ckplus(ck_dir)
        pick = rng.choice(len(ck), min(count // 2, len(ck)), replace=False)
        faces += gray_faces(ck.images[pick], ck.labels[pick], "ckplus")
    if fer_csv.is_file():
        fer = load_fer_csv(fer_csv)
        public = fer.subset(fer.usage == "PublicTest")
        pick = rng.choice(len(public), count - len(faces), replace=False)
        rows = np.flatnonzero(fer.usage == "PublicTest")[pick]
        faces += gray_faces(
            public.images[pick], public.labels[pick], "fer2013_public", crowd_labels(fer_csv, fer, rows)
        )
    return faces + photo_faces()


def crowd_labels(fer_csv: Path, fer, rows: np.ndarray) -> list:
    """The FER+ crowd's majority for CSV rows `rows` (None where people named none of the seven emotions), when
    the votes file is beside the CSV; the same faces are picked with or without it."""
    from fervi.training.votes import crowd_of_rows

    crowd = crowd_of_rows(fer_csv, fer.images[rows], rows)
    if crowd is None:
        return [None] * len(rows)
    return [int(m) if ok else None for m, ok in zip(crowd.majority(fer.labels[rows]), crowd.usable, strict=True)]


def crowd_reference(face) -> int | None:
    """What people say a face shows: the crowd's majority for FER-2013 faces, the posed label for CK+."""
    return face.crowd if face.source == "fer2013_public" else face.label


MARGIN_STEP = 0.1


def margin_flips(pipeline: FacePipeline, frame: np.ndarray, box: np.ndarray) -> int:
    """How many of the crops at margin -0.1 and +0.1 get another label than the crop at the margin in use."""
    from fervi.vision.preprocess import face_crops

    margins = [pipeline.margin - MARGIN_STEP, pipeline.margin, pipeline.margin + MARGIN_STEP]
    crops = np.concatenate([face_crops(frame, box[None], max(0.0, m)) for m in margins])
    labels = np.argmax(pipeline.classifier.predict(crops), axis=1)
    return int(labels[0] != labels[1]) + int(labels[2] != labels[1])


def run(pipeline: FacePipeline, faces: list, seed: int, occluded: bool, labelled_out: list | None = None) -> dict:
    """Per frame size and face width: found rate, label accuracy (original labels; and against people: the
    crowd's majority for FER-2013 faces, CK+'s posed label), false faces, flips, ms. `labelled_out` collects
    (frame size, width, source, label, crowd reference, predicted) of every found labelled face."""
    rng = np.random.default_rng(seed)
    out = {}
    for size in FRAME_SIZES:
        backdrops = [background(name, size) for name in FACE_FREE_PHOTOS]
        rows = {}
        for width in WIDTHS:
            if width > size[1]:
                continue
            found = correct = labelled = false_faces = flips = crowd_right = crowd_labelled = 0
            spent = 0.0
            for i, face in enumerate(faces):
                scene = paste(face, backdrops[i % len(backdrops)], width, rng, occluded)
                started = time.perf_counter()
                result = pipeline.analyze([scene.frame])[0]
                spent += time.perf_counter() - started
                hit, false = match(result.boxes, scene.box)
                false_faces += false
                if hit >= 0:
                    found += 1
                    flips += margin_flips(pipeline, scene.frame, result.boxes[hit])
                    if face.label is not None:
                        predicted = int(np.argmax(result.label_probs[hit]))
                        labelled += 1
                        correct += int(predicted == face.label)
                        reference = crowd_reference(face)
                        if reference is not None:
                            crowd_labelled += 1
                            crowd_right += int(predicted == reference)
                        if labelled_out is not None:
                            labelled_out.append(
                                (f"{size[0]}x{size[1]}", width, face.source, face.label, reference, predicted)
                            )
            rows[str(width)] = {
                "faces": len(faces),
                "found": round(found / len(faces), 4),
                "label_accuracy_of_found": round(correct / labelled, 4) if labelled else None,
                "crowd_label_accuracy_of_found": round(crowd_right / crowd_labelled, 4) if crowd_labelled else None,
                "false_faces_per_frame": round(false_faces / len(faces), 4),
                "label_flips_at_margin_pm_0.1": round(flips / (2 * found), 4) if found else None,
                "ms_per_frame": round(spent / len(faces) * 1000, 2),
            }
        out[f"{size[0]}x{size[1]}"] = rows
    return out


def per_class_recall(found: list, min_width: int = 48) -> dict:
    """Recall per emotion over the found labelled faces at least `min_width` wide, per source, against the
    original label and against people (crowd majority for FER-2013; CK+'s own label)."""
    from fervi.emotions import EMOTIONS

    out = {}
    for source in sorted({row[2] for row in found}):
        rows = [r for r in found if r[2] == source and r[1] >= min_width]
        for name, column in (("original", 3), ("people", 4)):
            truth = np.array([r[column] for r in rows if r[column] is not None], int)
            pred = np.array([r[5] for r in rows if r[column] is not None], int)
            out[f"{source}_{name}"] = {
                "faces": int(len(truth)),
                "accuracy": round(float((truth == pred).mean()), 4) if len(truth) else None,
                "recall": {
                    e: round(float((pred[truth == i] == i).mean()), 4) if (truth == i).any() else None
                    for i, e in enumerate(EMOTIONS)
                },
            }
    return out


def face_free(pipeline: FacePipeline) -> dict:
    out = {}
    for size in FRAME_SIZES:
        scenes = face_free_scenes(size)
        found = [len(pipeline.analyze([scene.frame])[0].boxes) for scene in scenes]
        out[f"{size[0]}x{size[1]}"] = {
            "images": len(scenes),
            "false_faces": int(sum(found)),
            "false_faces_per_10_images": round(10 * sum(found) / len(scenes), 2),
            "images_with_a_false_face": [s.source for s, n in zip(scenes, found, strict=True) if n],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", type=Path, help="folder with ckplus48/ and fer2013/")
    parser.add_argument("--faces", type=int, default=60, help="labelled faces per width (half CK+, half FER)")
    parser.add_argument("--detector", help="FERVI_DETECTOR to measure (default: the settings' one)")
    parser.add_argument("--min-face", type=int, help="FERVI_DETECTOR_MIN_FACE to measure")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--save", action="store_true", help="write the JSON under bench/results/")
    parser.add_argument("--tag", default="", help="a word for the saved file's name (e.g. the model measured)")
    args = parser.parse_args()

    settings = load_settings()
    changes = {k: v for k, v in (("detector", args.detector), ("detector_min_face", args.min_face)) if v}
    settings = settings.replace(**changes)
    pipeline = FacePipeline.from_settings(settings)
    faces = real_faces(args.data, args.faces, np.random.default_rng(args.seed))
    started = time.time()
    found: list[tuple] = []  # every found labelled face of the clear scenes (`run`'s labelled_out)
    result: dict[str, Any] = {
        "bench": "face_distances",
        "date": date.today().isoformat(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "detector": settings.detector,
        "min_face": settings.detector_min_face,
        "margin": settings.face_margin,
        "faces": {"labelled": sum(f.label is not None for f in faces), "photos": sum(f.label is None for f in faces)},
        "face_free": face_free(pipeline),
        "clear": run(pipeline, faces, args.seed, occluded=False, labelled_out=found),
        "hand_over_mouth": run(pipeline, faces, args.seed, occluded=True),
    }
    result["clear_per_class_recall_from_48px"] = per_class_recall(found)
    result["model_dir"] = settings.models
    result["seconds"] = round(time.time() - started, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.save:
        tag = f"-{args.tag}" if args.tag else ""
        name = (
            f"face_distances-{result['date']}-{settings.detector}{tag}-{platform.machine()}-"
            f"{result['machine']['cpus']}cpu.json"
        )
        path = Path(__file__).resolve().parent / "results" / name
        path.write_text(text + "\n")
        print(f"saved {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
