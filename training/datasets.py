"""Loaders for the face datasets FERVI trains on: FER-2013 (Kaggle CSV or image folders) and CK+ folders.

Every loader returns one `FaceSet`: 48x48 uint8 faces, FER label ids, a usage per row
(Training / PublicTest / PrivateTest, or "" when the source has none) and a group per row
(the CK+ subject, so a split never puts frames of one person on both sides).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fervi.emotions import EMOTIONS, FACE_SIZE

from .files import DatasetError, open_text
from .votes import CrowdVotes, load_votes, pixels_sha1, votes_beside

log = logging.getLogger(__name__)

USAGES = ("Training", "PublicTest", "PrivateTest")
PIXELS = FACE_SIZE * FACE_SIZE
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm"}

# Folder names seen in the FER-2013 image release and in CK+ mapped onto FER label ids.
FOLDER_LABELS = {name: i for i, name in enumerate(EMOTIONS)} | {
    "anger": 0,
    "sadness": 4,
    "surprised": 5,
}
CONTEMPT = "contempt"
# In the image-folder release of FER-2013, train/ and test/ are the Kaggle Training and PublicTest rows.
SPLIT_FOLDERS = {"train": "Training", "test": "PublicTest", "val": "PublicTest", "validation": "PublicTest"}


@dataclass
class FaceSet:
    images: np.ndarray  # (N, 48, 48) uint8
    labels: np.ndarray  # (N,) int64, FER label ids
    usage: np.ndarray  # (N,) str: Training / PublicTest / PrivateTest / ""
    groups: np.ndarray  # (N,) str: subject id where known, else ""
    source: str = ""
    skipped: int = 0
    notes: list[str] = field(default_factory=list)
    # FER+ crowd votes, (N, 10) counts in `votes.VOTE_COLUMNS` order, zeros for faces without votes (CK+); set
    # when the faces were loaded with votes: `labels` is then the crowd's majority, `original` the dataset's label
    votes: np.ndarray | None = None
    original: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def crowd(self) -> CrowdVotes | None:
        """The faces' `CrowdVotes`, or None when they were loaded without votes."""
        return None if self.votes is None else CrowdVotes(self.votes)

    def targets(self) -> np.ndarray:
        """(N, 7) what the model learns per face: the crowd's vote distribution where people voted, else the
        one-hot label."""
        one_hot = np.eye(len(EMOTIONS), dtype=np.float32)[self.labels]
        if self.votes is None:
            return one_hot
        crowd = CrowdVotes(self.votes)
        voted = crowd.emotion_votes.sum(axis=1) > 0
        return np.where(voted[:, None], crowd.distributions(), one_hot).astype(np.float32)

    def with_images(self, images: np.ndarray) -> FaceSet:
        """The same faces, labels and votes, framed otherwise (`images` row for row)."""
        return FaceSet(
            images,
            self.labels,
            self.usage,
            self.groups,
            self.source,
            self.skipped,
            self.notes,
            self.votes,
            self.original,
        )

    @property
    def has_usage(self) -> bool:
        return bool(len(self.usage)) and bool(np.all(self.usage != ""))

    def subset(self, mask: np.ndarray) -> FaceSet:
        return FaceSet(
            self.images[mask],
            self.labels[mask],
            self.usage[mask],
            self.groups[mask],
            self.source,
            self.skipped,
            list(self.notes),
            None if self.votes is None else self.votes[mask],
            None if self.original is None else self.original[mask],
        )

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(EMOTIONS))
        return {name: int(n) for name, n in zip(EMOTIONS, counts, strict=True)}

    @staticmethod
    def concat(sets: list[FaceSet]) -> FaceSet:
        """One set of all; votes are kept when any set has them (the others get rows of zeros: no votes)."""
        voted = any(s.votes is not None for s in sets)
        return FaceSet(
            np.concatenate([s.images for s in sets]),
            np.concatenate([s.labels for s in sets]),
            np.concatenate([s.usage for s in sets]),
            np.concatenate([s.groups for s in sets]),
            "+".join(s.source for s in sets),
            sum(s.skipped for s in sets),
            votes=np.concatenate([s.votes if s.votes is not None else np.zeros((len(s), 10), np.int64) for s in sets])
            if voted
            else None,
            original=np.concatenate([s.original if s.original is not None else s.labels for s in sets])
            if voted
            else None,
        )


def _empty(source: str) -> FaceSet:
    return FaceSet(
        np.zeros((0, FACE_SIZE, FACE_SIZE), np.uint8),
        np.zeros(0, np.int64),
        np.zeros(0, "<U11"),
        np.zeros(0, "<U16"),
        source,
    )


def _parse_row(row: dict, has_usage: bool) -> tuple[np.ndarray, int, str]:
    try:
        label = int(row["emotion"])
    except (TypeError, ValueError):
        raise DatasetError(f"emotion {row.get('emotion')!r} is not an integer") from None
    if not 0 <= label < len(EMOTIONS):
        raise DatasetError(f"unknown emotion label {label} (expected 0..{len(EMOTIONS) - 1})")
    usage = (row.get("Usage") or "").strip() if has_usage else ""
    if has_usage and usage not in USAGES:
        raise DatasetError(f"unknown Usage {usage!r} (expected one of {', '.join(USAGES)})")
    text = row.get("pixels") or ""
    try:
        pixels = np.array(text.split(), dtype=np.int64)
    except ValueError:
        raise DatasetError("pixels are not all integers") from None
    if pixels.size != PIXELS:
        raise DatasetError(f"{pixels.size} pixels, expected {PIXELS}")
    if pixels.min() < 0 or pixels.max() > 255:
        raise DatasetError("pixel values outside 0..255")
    return pixels.astype(np.uint8).reshape(FACE_SIZE, FACE_SIZE), label, usage


def load_fer_csv(
    path: str | Path,
    skip_bad: bool = False,
    limit: int | None = None,
    votes: str | Path | None = None,
    bar: Callable[[Iterable], Iterable] | None = None,
) -> FaceSet:
    """Load the Kaggle FER-2013 CSV (`emotion,pixels[,Usage]`, plain or .gz).

    With `votes` (a FER+ votes file, joined row by row and checked by pixel hash: `votes.load_votes`) the faces
    whose crowd named one of the seven emotions are kept, labelled with the crowd's majority, with the votes
    and the original label beside it; the others are counted in `notes`. `bar`: wraps the rows read (a progress
    bar)."""
    path = Path(path)
    images, labels, usages, rows, sha1s = [], [], [], [], []
    skipped = 0
    total_rows = 0
    read_to_end = True
    with open_text(path) as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        missing = {"emotion", "pixels"} - set(fields)
        if missing:
            raise DatasetError(f"{path}: missing column(s) {', '.join(sorted(missing))}; found {fields}")
        has_usage = "Usage" in fields
        for row_number, row in enumerate(bar(reader) if bar else reader, start=2):  # line 1 is the header
            total_rows += 1
            try:
                image, label, usage = _parse_row(row, has_usage)
            except DatasetError as err:
                if not skip_bad:
                    raise DatasetError(f"{path}: row {row_number}: {err}") from None
                skipped += 1
                continue
            images.append(image)
            labels.append(label)
            usages.append(usage)
            if votes is not None:
                rows.append(row_number - 2)
                sha1s.append(pixels_sha1(row["pixels"] or ""))
            if limit is not None and len(labels) >= limit:
                read_to_end = False
                break
    if skipped:
        log.warning("event=bad_rows_skipped file=%s skipped=%d", path, skipped)
    if not labels:
        faces = _empty(str(path))
        faces.skipped = skipped
        return faces
    faces = FaceSet(
        np.stack(images),
        np.array(labels, np.int64),
        np.array(usages, "<U11"),
        np.full(len(labels), "", "<U16"),
        str(path),
        skipped,
    )
    return (
        faces
        if votes is None
        else _with_votes(faces, votes, np.array(rows), sha1s, path, total_rows if read_to_end else None)
    )


def _with_votes(
    faces: FaceSet, votes_path, rows: np.ndarray, sha1s: list[str], path: Path, total_rows: int | None
) -> FaceSet:
    crowd = load_votes(votes_path, rows, sha1s, path.name, total_rows)
    usable = crowd.usable
    kept = faces.subset(usable)
    kept.votes, kept.original = crowd.counts[usable], faces.labels[usable]
    kept.labels = crowd.majority(faces.labels)[usable]
    note = (
        f"crowd votes from {Path(votes_path).name}: {int(usable.sum())} of {len(faces)} faces kept; "
        f"{int((~crowd.has_votes).sum())} without votes and {int((crowd.has_votes & ~usable).sum())} whose "
        "plurality is unknown, not a face or contempt left out"
    )
    kept.notes.append(note)
    log.debug("event=votes_joined file=%s kept=%d of=%d", votes_path, int(usable.sum()), len(faces))
    return kept


def _read_gray48(file: Path) -> np.ndarray:
    image = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DatasetError(f"{file}: not a readable image")
    if image.shape != (FACE_SIZE, FACE_SIZE):
        image = cv2.resize(image, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
    return image


def _label_for_folder(folder: Path, include_contempt: bool) -> int | None:
    name = folder.name.lower()
    if name == CONTEMPT:
        return FOLDER_LABELS["disgust"] if include_contempt else None
    if name not in FOLDER_LABELS:
        raise DatasetError(f"{folder}: unknown emotion folder {folder.name!r}")
    return FOLDER_LABELS[name]


def _load_emotion_folders(
    root: Path, usage: str, skip_bad: bool, include_contempt: bool, subject_groups: bool
) -> FaceSet:
    images, labels, groups = [], [], []
    skipped = 0
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label = _label_for_folder(folder, include_contempt)
        if label is None:
            continue
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                images.append(_read_gray48(file))
            except DatasetError:
                if not skip_bad:
                    raise
                skipped += 1
                continue
            labels.append(label)
            # CK+ names frames S<subject>_<sequence>_<frame>.png; the subject keeps a person on one side.
            groups.append(file.name.split("_")[0] if subject_groups else "")
    if not labels:
        raise DatasetError(f"{root}: no labelled images found in emotion folders")
    return FaceSet(
        np.stack(images),
        np.array(labels, np.int64),
        np.full(len(labels), usage, "<U11"),
        np.array(groups, "<U16"),
        str(root),
        skipped,
    )


def load_image_folders(path: str | Path, skip_bad: bool = False) -> FaceSet:
    """Load the FER-2013 image release: `train/<emotion>/*.jpg`, `test/<emotion>/*.jpg`."""
    root = Path(path)
    parts = [
        _load_emotion_folders(sub, SPLIT_FOLDERS[sub.name.lower()], skip_bad, False, False)
        for sub in sorted(root.iterdir())
        if sub.is_dir() and sub.name.lower() in SPLIT_FOLDERS
    ]
    if not parts:
        raise DatasetError(f"{root}: expected train/ and test/ folders of emotion folders")
    return FaceSet.concat(parts)


def load_ckplus(path: str | Path, skip_bad: bool = False, include_contempt: bool = False) -> FaceSet:
    """Load CK+ in folder form (`<emotion>/*.png`); contempt is dropped unless asked for (then: disgust)."""
    return _load_emotion_folders(Path(path), "", skip_bad, include_contempt, True)


def load_faces(
    path: str | Path,
    skip_bad: bool = False,
    include_contempt: bool = False,
    votes: str | Path | None = None,
    bar: Callable[[Iterable], Iterable] | None = None,
) -> FaceSet:
    """Load any supported dataset by its shape: a CSV, a train/test image release, or emotion folders.

    `votes`: a FER+ votes file for a CSV, or "auto" for the one beside it if there is one (`votes.VOTES_FILE`)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_file():
        if votes == "auto":
            votes = votes_beside(path)
        return load_fer_csv(path, skip_bad=skip_bad, votes=votes, bar=bar)
    names = {p.name.lower() for p in path.iterdir() if p.is_dir()}
    if names & set(SPLIT_FOLDERS):
        return load_image_folders(path, skip_bad=skip_bad)
    return load_ckplus(path, skip_bad=skip_bad, include_contempt=include_contempt)
