"""The FER+ crowd votes (ten people per FER-2013 face) as label distributions over FERVI's seven emotions.

`ferplus_votes.csv.gz` holds one row per row of the FER-2013 CSV, in the same order, with the first 10 hex
digits of the SHA-1 of that row's `pixels` string; the join is checked row by row and a misaligned file is
refused. What FERVI does with the columns that are not among its seven emotions:
- contempt votes are dropped (FERVI has no contempt class; folding them into disgust would make disgust
  mostly a different expression);
- faces whose plurality is unknown, not-a-face (NF) or contempt, and faces without votes, are left out of
  training and of the crowd metrics: ten people could not name one of the seven emotions on them.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fervi.emotions import EMOTIONS, NUM_EMOTIONS

from .files import DatasetError, open_text

VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
# FER+ emotion column -> FERVI emotion id
EMOTION_OF_COLUMN = {
    "neutral": EMOTIONS.index("neutral"),
    "happiness": EMOTIONS.index("happy"),
    "surprise": EMOTIONS.index("surprise"),
    "sadness": EMOTIONS.index("sad"),
    "anger": EMOTIONS.index("angry"),
    "disgust": EMOTIONS.index("disgust"),
    "fear": EMOTIONS.index("fear"),
}
# vote column index -> FERVI emotion id, -1 for contempt, unknown and NF
EMOTION_OF_VOTE_COLUMN = np.array([EMOTION_OF_COLUMN.get(c, -1) for c in VOTE_COLUMNS], dtype=np.int64)
OTHER_COLUMNS = ("contempt", "unknown", "NF")
VOTES_FILE = "ferplus_votes.csv.gz"
SHA1_DIGITS = 10


class VotesError(DatasetError):
    """A votes file that cannot be joined to its dataset; the message is one line naming both files."""


def pixels_sha1(pixels: str) -> str:
    return hashlib.sha1(pixels.encode()).hexdigest()[:SHA1_DIGITS]


@dataclass
class CrowdVotes:
    """Votes for a set of faces, row for row: (N, 10) counts in `VOTE_COLUMNS` order (0 where none)."""

    counts: np.ndarray

    @property
    def has_votes(self) -> np.ndarray:
        return self.counts.sum(axis=1) > 0

    @property
    def emotion_votes(self) -> np.ndarray:
        """(N, 7) votes for FERVI's emotions, in FERVI's order (contempt, unknown and NF dropped)."""
        out = np.zeros((len(self.counts), NUM_EMOTIONS), np.float32)
        for column, emotion in EMOTION_OF_COLUMN.items():
            out[:, emotion] = self.counts[:, VOTE_COLUMNS.index(column)]
        return out

    @property
    def usable(self) -> np.ndarray:
        """Faces whose plurality is one of the seven emotions (ties with contempt, unknown or NF excluded)."""
        emotions = self.emotion_votes.max(axis=1)
        others = self.counts[:, [VOTE_COLUMNS.index(c) for c in OTHER_COLUMNS]].max(axis=1)
        return self.has_votes & (emotions > others)

    def distributions(self) -> np.ndarray:
        """(N, 7) the crowd's label distribution over the seven emotions (rows without emotion votes: 0)."""
        votes = self.emotion_votes
        total = votes.sum(axis=1, keepdims=True)
        return np.divide(votes, total, out=np.zeros_like(votes), where=total > 0)

    def majority(self, original: np.ndarray | None = None) -> np.ndarray:
        """(N,) the emotion most people chose. Where people tied, the `original` label (the dataset's own
        annotator: an eleventh vote) if it is among the tied emotions, else the first tied one in FERVI's order.
        (`top_set` gives all tied emotions: the crowd metrics count any of them as right.)"""
        top = self.top_set()
        chosen = self.emotion_votes.argmax(axis=1)
        if original is not None:
            rows = np.arange(len(chosen))
            tied_on_original = (top.sum(axis=1) > 1) & top[rows, np.asarray(original)]
            chosen = np.where(tied_on_original, original, chosen)
        return chosen

    def top_set(self) -> np.ndarray:
        """(N, 7) bool: the emotions with the most votes (more than one where people tied)."""
        votes = self.emotion_votes
        return (votes == votes.max(axis=1, keepdims=True)) & (votes > 0)

    def paper_majority(self) -> np.ndarray:
        """The FER+ paper's "majority" test protocol, as microsoft/FERPlus scores it: each face's single votes
        are dropped as outliers, and a face counts only where one emotion then has more than half of the votes
        left. (N,) that emotion in FERVI's order, -1 for faces that do not count. Faces whose such emotion is
        contempt do not count (FERVI has no contempt class; the paper's 85.0% counts them)."""
        kept = np.where(self.counts > 1, self.counts, 0)
        emotion = EMOTION_OF_VOTE_COLUMN[kept.argmax(axis=1)]
        return np.where(kept.max(axis=1) * 2 > kept.sum(axis=1), emotion, -1)

    def subset(self, rows) -> CrowdVotes:
        return CrowdVotes(self.counts[rows])


def votes_beside(csv_path: str | Path) -> Path | None:
    """The votes file FERVI looks for beside a FER-2013 CSV, if it is there."""
    candidate = Path(csv_path).with_name(VOTES_FILE)
    return candidate if candidate.is_file() else None


def load_votes(
    path: str | Path, rows: np.ndarray, sha1s: list[str], data_name: str, total_rows: int | None = None
) -> CrowdVotes:
    """The votes for the dataset rows `rows` (0-based data rows of the CSV), checked against each row's pixels
    hash `sha1s`; `total_rows`, where the whole CSV was read, must be the votes file's row count too. Raises
    `VotesError` (one line) when the files are not aligned."""
    path = Path(path)
    wanted = {int(r): k for k, r in enumerate(rows)}
    counts = np.zeros((len(rows), len(VOTE_COLUMNS)), np.int64)
    seen = lines = 0
    with open_text(path) as handle:
        reader = csv.DictReader(handle)
        missing = set(VOTE_COLUMNS) | {"pixels_sha1"}
        missing -= set(reader.fieldnames or [])
        if missing:
            raise VotesError(f"{path}: not a FER+ votes file (missing column(s) {', '.join(sorted(missing))})")
        for row_number, row in enumerate(reader):
            lines += 1
            k = wanted.get(row_number)
            if k is None:
                continue
            seen += 1
            if row["pixels_sha1"] != sha1s[k]:
                raise VotesError(
                    f"{path} row {row_number + 2} is for another face than {data_name} row {row_number + 2} "
                    f"(pixels_sha1 {row['pixels_sha1']} != {sha1s[k]}): the votes file is not aligned with this "
                    "CSV (it must have one row per CSV row, in the same order)"
                )
            try:
                counts[k] = [int(row[c]) if row[c] not in ("", None) else 0 for c in VOTE_COLUMNS]
            except ValueError:
                raise VotesError(f"{path} row {row_number + 2}: votes are not whole numbers") from None
    if seen != len(rows):
        raise VotesError(
            f"{path} has fewer rows than {data_name} ({seen} of its {len(rows)} faces found): "
            "the votes file is not aligned with this CSV"
        )
    if total_rows is not None and lines != total_rows:
        raise VotesError(
            f"{path} has {lines} rows and {data_name} {total_rows}: the votes file is not aligned with "
            "this CSV (it must have one row per CSV row, in the same order)"
        )
    if (counts < 0).any():
        raise VotesError(f"{path}: negative vote counts")
    return CrowdVotes(counts)


def crowd_of_rows(csv_path: str | Path, images: np.ndarray, rows: np.ndarray) -> CrowdVotes | None:
    """The votes for the CSV's data rows `rows`, whose pixels are `images` (row for row, as loaded without
    votes), when the votes file is beside the CSV; None when it is not."""
    votes_file = votes_beside(csv_path)
    if votes_file is None:
        return None
    sha1s = [pixels_sha1(" ".join(map(str, image.ravel()))) for image in images]
    return load_votes(votes_file, rows, sha1s, Path(csv_path).name)
