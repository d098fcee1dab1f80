"""Honest splits: over-sampling sees the training split only, and no held-out face enters training."""

from __future__ import annotations

import numpy as np
from fervi.training.datasets import load_ckplus, load_fer_csv
from fervi.training.splits import image_hashes, overlap_report, oversample_indices, split_faces


def test_oversampling_adds_no_evaluation_face(fer_csv):
    faces = load_fer_csv(fer_csv)
    split = split_faces(faces)
    assert split.how == "usage column"
    assert len(split.train) == 28709 and len(split.val) == 3589
    index = oversample_indices(split.train.labels, 0.25, seed=1)
    oversampled = split.train.images[index]
    counts = np.bincount(split.train.labels[index], minlength=7)
    assert counts.min() >= int(np.bincount(split.train.labels).max() * 0.25)  # it really over-sampled
    assert len(index) > len(split.train)
    train_hashes = set(image_hashes(oversampled))
    val_hashes = set(image_hashes(split.val.images))
    # FER-2013 itself has some identical images in Training and PublicTest; over-sampling adds none:
    assert train_hashes == set(image_hashes(split.train.images))
    assert len(train_hashes & val_hashes) == overlap_report({"train": split.train, "val": split.val})["train&val"]
    assert np.all(index < len(split.train))


def test_ckplus_split_by_subject(ckplus_dir):
    faces = load_ckplus(ckplus_dir)
    split = split_faces(faces, val_fraction=0.2, seed=42)
    assert not set(split.train.groups) & set(split.val.groups)
    assert overlap_report({"train": split.train, "val": split.val})["train&val"] == 0
    assert 0.1 < len(split.val) / len(faces) < 0.35
    again = split_faces(faces, val_fraction=0.2, seed=42)
    assert set(again.val.groups) == set(split.val.groups)  # fixed seed, same split
