"""Honest splits: made first, before any over-sampling or augmentation, which touch the training split only.

The 2023 report over-sampled before splitting, so copies of training faces sat in its test set. Here the
split comes from the data's own `Usage` column, or else from a fixed-seed stratified split by subject,
and `overlap_report` counts identical images across the splits by pixel hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from imblearn.over_sampling import RandomOverSampler
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from fervi.emotions import EMOTIONS

from .datasets import FaceSet


@dataclass
class Split:
    train: FaceSet
    val: FaceSet
    test: FaceSet | None
    how: str


def split_faces(faces: FaceSet, val_fraction: float = 0.2, seed: int = 42) -> Split:
    """Training / PublicTest / PrivateTest from `Usage`, else a stratified (by subject where known) split."""
    if faces.has_usage:
        test_mask = faces.usage == "PrivateTest"
        return Split(
            faces.subset(faces.usage == "Training"),
            faces.subset(faces.usage == "PublicTest"),
            faces.subset(test_mask) if test_mask.any() else None,
            "usage column",
        )
    train_idx, val_idx = split_indices(faces.labels, faces.groups, val_fraction, seed)
    how = "stratified by subject" if np.any(faces.groups != "") else "stratified"
    return Split(faces.subset(train_idx), faces.subset(val_idx), None, f"{how}, seed {seed}, val {val_fraction:g}")


def split_indices(
    labels: np.ndarray, groups: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified split; rows sharing a non-empty group (a subject) stay on one side."""
    index = np.arange(len(labels))
    if np.any(groups != ""):
        folds = max(2, round(1 / val_fraction))
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        train_idx, val_idx = next(splitter.split(index, labels, groups))
        return train_idx, val_idx
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 else None
    train_idx, val_idx = train_test_split(index, test_size=val_fraction, random_state=seed, stratify=stratify)
    return np.sort(train_idx), np.sort(val_idx)


def image_hashes(images: np.ndarray) -> np.ndarray:
    return np.array([hashlib.sha1(image.tobytes()).hexdigest() for image in images])


def overlap_report(parts: dict[str, FaceSet | None]) -> dict[str, int]:
    """Identical images (by pixel hash) shared between each pair of splits."""
    hashes = {name: set(image_hashes(faces.images)) for name, faces in parts.items() if faces is not None}
    names = list(hashes)
    return {f"{a}&{b}": len(hashes[a] & hashes[b]) for i, a in enumerate(names) for b in names[i + 1 :]}


def oversample_indices(labels: np.ndarray, min_share: float, seed: int) -> np.ndarray:
    """Row indices of the training split with minority classes repeated up to `min_share` of the largest.

    imbalanced-learn's RandomOverSampler picks the copies; it sees only training rows.
    """
    counts = np.bincount(labels, minlength=len(EMOTIONS))
    target = int(counts.max() * min_share)
    strategy = {c: max(int(n), target) for c, n in enumerate(counts) if n > 0}
    sampler = RandomOverSampler(sampling_strategy=strategy, random_state=seed)
    index = np.arange(len(labels)).reshape(-1, 1)
    resampled, _ = sampler.fit_resample(index, labels)
    return resampled.ravel()
