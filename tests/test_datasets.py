"""Loaders on real rows of the shared FER-2013 CSV and CK+ folders, and on malformed files."""

from __future__ import annotations

import gzip

import cv2
import numpy as np
import pytest
from fervi.training.datasets import DatasetError, load_ckplus, load_faces, load_fer_csv, load_image_folders

from fervi.emotions import EMOTIONS


def _first_lines(path, n: int) -> list[str]:
    with gzip.open(path, "rt") as handle:
        return [next(handle) for _ in range(n + 1)]


def test_fer_csv_real_rows(fer_csv):
    faces = load_fer_csv(fer_csv, limit=500)
    assert faces.images.shape == (500, 48, 48) and faces.images.dtype == np.uint8
    assert set(np.unique(faces.labels)) <= set(range(7))
    assert set(faces.usage) <= {"Training", "PublicTest"}
    first = _first_lines(fer_csv, 1)[1].split(",")
    assert faces.labels[0] == int(first[0])
    assert faces.images[0].ravel()[:5].tolist() == [int(v) for v in first[1].split()[:5]]


def test_plain_csv_without_usage(tmp_path, fer_csv):
    lines = _first_lines(fer_csv, 20)
    plain = tmp_path / "plain.csv"
    plain.write_text("emotion,pixels\n" + "".join(",".join(line.split(",")[:2]) + "\n" for line in lines[1:]))
    faces = load_faces(plain)
    assert len(faces) == 20 and not faces.has_usage


@pytest.mark.parametrize(
    "row, reason",
    [
        ("3,1 2 3,Training", "3 pixels, expected 2304"),
        ("3," + " ".join(["x"] * 2304) + ",Training", "not all integers"),
        ("9," + " ".join(["1"] * 2304) + ",Training", "unknown emotion label 9"),
        ("2," + " ".join(["1"] * 2304) + ",Somewhere", "unknown Usage 'Somewhere'"),
        ("2," + " ".join(["300"] * 2304) + ",Training", "outside 0..255"),
    ],
)
def test_bad_row_names_file_and_row(tmp_path, fer_csv, row, reason):
    good = _first_lines(fer_csv, 3)
    path = tmp_path / "bad.csv"
    path.write_text("".join(good) + row + "\n")
    with pytest.raises(DatasetError) as err:
        load_fer_csv(path)
    assert str(path) in str(err.value) and "row 5" in str(err.value) and reason in str(err.value)
    faces = load_fer_csv(path, skip_bad=True)
    assert len(faces) == 3 and faces.skipped == 1


def test_missing_columns(tmp_path):
    path = tmp_path / "cols.csv"
    path.write_text("label,image\n1,2\n")
    with pytest.raises(DatasetError, match="missing column"):
        load_fer_csv(path)


def test_image_folder_release(tmp_path, fer_csv):
    faces = load_fer_csv(fer_csv, limit=30)
    for i, (image, label) in enumerate(zip(faces.images, faces.labels, strict=True)):
        split = "train" if i < 20 else "test"
        folder = tmp_path / split / EMOTIONS[label]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.png"), image)
    loaded = load_image_folders(tmp_path)
    assert len(loaded) == 30
    assert (loaded.usage == "Training").sum() == 20 and (loaded.usage == "PublicTest").sum() == 10
    assert sorted(loaded.labels.tolist()) == sorted(faces.labels.tolist())


def test_ckplus_maps_labels_and_drops_contempt(ckplus_dir):
    faces = load_ckplus(ckplus_dir)
    counts = faces.class_counts()
    assert counts["neutral"] == 0  # CK+48 has no neutral folder
    n_contempt = len(list((ckplus_dir / "contempt").glob("*.png")))
    assert len(faces) == sum(len(list(d.glob("*.png"))) for d in ckplus_dir.iterdir()) - n_contempt
    assert counts["angry"] == len(list((ckplus_dir / "anger").glob("*.png")))
    assert all(g.startswith("S") for g in faces.groups)
    with_contempt = load_ckplus(ckplus_dir, include_contempt=True)
    assert len(with_contempt) == len(faces) + n_contempt


def test_unreadable_image_in_folder(tmp_path):
    (tmp_path / "happy").mkdir()
    (tmp_path / "happy" / "S001_001_01.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="not a readable image"):
        load_ckplus(tmp_path)
