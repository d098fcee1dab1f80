"""What every dataset reader shares: the error that names a file and row, and opening plain or gzipped text."""

from __future__ import annotations

import gzip
import io
from pathlib import Path


class DatasetError(ValueError):
    """A dataset file or row that cannot be used; the message names the file and row."""


def open_text(path: Path) -> io.TextIOBase:
    """A CSV's text, plain or .gz, for the csv module (newline="")."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")
