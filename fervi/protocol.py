"""The stream protocol: what a frame, a result, a tracks entry and a dead letter look like as Redis stream
entries (their faces are `fervi.faces.Faces`).

Every stage reads and writes entries only through these classes; `docs/protocol.md` documents the same
fields for clients in other languages. Entries carry `v` (the schema version); a reader rejects entries of
a version it does not know with a `ProtocolError`, which workers turn into a dead letter.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, TypeVar, overload
from urllib.parse import urlsplit

from .faces import Faces
from .faces import ProtocolError as ProtocolError  # re-exported: part of the protocol

N = TypeVar("N", int, float)

SCHEMA_VERSION = 1
CAMERA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


BROWSER_CAMERA_PREFIX = "web-"  # cameras the dashboard makes for browsers (private unless shared)
IMAGE_CAMERA_PREFIX = "image-"  # one-off cameras of the dashboard's image mode
RESERVED_PREFIXES = (BROWSER_CAMERA_PREFIX, IMAGE_CAMERA_PREFIX)


def is_browser_camera(name: str) -> bool:
    return name.startswith(BROWSER_CAMERA_PREFIX)


def metric_camera(name: str) -> str:
    """A camera as a metric label: browser and image-mode cameras come and go (one per visitor or upload)
    and are private, so they are counted together as "browser" and "image", never by name."""
    if name.startswith(BROWSER_CAMERA_PREFIX):
        return "browser"
    if name.startswith(IMAGE_CAMERA_PREFIX):
        return "image"
    return name


def check_camera(name: str) -> str:
    """Camera names become parts of Redis keys and file names: letters, digits, `_ . -`, at most 64."""
    if not isinstance(name, str) or not CAMERA_NAME.fullmatch(name) or ".." in name:
        raise ProtocolError(
            f"invalid camera name {name!r}: use 1-64 letters, digits, '_', '.', '-', starting with a letter or digit"
        )
    return name


def _text(fields: Mapping[Any, Any], key: str) -> str:
    value = fields.get(key, fields.get(key.encode()))
    if value is None:
        raise ProtocolError(f"missing field {key!r}")
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@overload
def _number(fields: Mapping[Any, Any], key: str) -> float: ...
@overload
def _number(fields: Mapping[Any, Any], key: str, kind: type[N]) -> N: ...
def _number(fields: Mapping[Any, Any], key: str, kind: type[float] | type[int] = float) -> float:
    raw = _text(fields, key)
    try:
        return kind(raw)
    except ValueError:
        raise ProtocolError(f"field {key!r} is not a {kind.__name__}: {raw[:32]!r}") from None


def _json(fields: Mapping[Any, Any], key: str) -> Any:
    try:
        return json.loads(_text(fields, key))
    except json.JSONDecodeError as err:
        raise ProtocolError(f"{key} is not JSON: {err}") from None


def _check_version(fields: Mapping[Any, Any]) -> None:
    version = _number(fields, "v", int)
    if version != SCHEMA_VERSION:
        raise ProtocolError(f"unsupported schema version {version} (this FERVI reads {SCHEMA_VERSION})")


class _FrameAnswer(TypedDict):
    """What a result and a tracks entry both say: the frame they answer (camera, seq, index, capture time),
    its size and its faces."""

    camera: str
    seq: int
    index: int
    captured_at: float
    width: int
    height: int
    faces: Faces


def answer_stamp(fields: Mapping[Any, Any]) -> tuple[float, int]:
    """A result's or tracks entry's capture time and seq, its schema version checked, without reading its
    faces (what a frame rate needs)."""
    _check_version(fields)
    return _number(fields, "ts"), _number(fields, "seq", int)


def is_live_frame(fields: Mapping[Any, Any]) -> bool:
    """Whether a frame entry is marked live (its one field read, the rest not parsed); unmarked: not live."""
    return fields.get("live", fields.get(b"live")) in ("1", b"1")


def _frame_answer(fields: Mapping[Any, Any]) -> _FrameAnswer:
    """The shared part of a result or tracks entry, its schema version checked."""
    captured_at, seq = answer_stamp(fields)
    return _FrameAnswer(
        camera=_text(fields, "camera"),
        seq=seq,
        index=_number(fields, "index", int),
        captured_at=captured_at,
        width=_number(fields, "w", int),
        height=_number(fields, "h", int),
        faces=Faces.from_list(_json(fields, "faces")),
    )


@dataclass
class Frame:
    """One captured image of a camera. `seq` is given by Redis when the frame is added (per camera, rising)."""

    camera: str
    captured_at: float  # unix seconds at capture
    width: int
    height: int
    jpeg: bytes
    live: bool = True  # live frames may be dropped or skipped; file frames never are
    index: int = -1  # position in its source (frame number of a file), -1 when unknown
    seq: int = -1

    def to_fields(self) -> dict[str, bytes | str]:
        """Fields for XADD; `seq` is added by the bus when Redis assigns it."""
        return {
            "v": str(SCHEMA_VERSION),
            "camera": self.camera,
            "ts": f"{self.captured_at:.6f}",
            "w": str(self.width),
            "h": str(self.height),
            "live": "1" if self.live else "0",
            "index": str(self.index),
            "jpeg": self.jpeg,
        }

    @classmethod
    def from_fields(cls, fields: Mapping[Any, Any]) -> Frame:
        _check_version(fields)
        jpeg = fields.get(b"jpeg", fields.get("jpeg"))
        if jpeg is None:
            raise ProtocolError("missing field 'jpeg'")
        if isinstance(jpeg, str):
            jpeg = jpeg.encode("latin-1")
        if len(jpeg) == 0:
            raise ProtocolError("empty jpeg")
        return cls(
            camera=check_camera(_text(fields, "camera")),
            captured_at=_number(fields, "ts"),
            width=_number(fields, "w", int),
            height=_number(fields, "h", int),
            jpeg=bytes(jpeg),
            live=_text(fields, "live") == "1",
            index=_number(fields, "index", int),
            seq=_number(fields, "seq", int),
        )


@dataclass
class Result:
    """A worker's answer for one frame: every face with its box and 7 emotion probabilities."""

    camera: str
    seq: int
    index: int
    captured_at: float
    dequeued_at: float
    done_at: float
    worker: str
    width: int
    height: int
    faces: Faces
    gap: str = ""  # set when the frame was not analysed: "skipped" (a stale live frame) or "dead" (dead-lettered)

    def to_fields(self) -> dict[str, str]:
        fields = {
            "v": str(SCHEMA_VERSION),
            "camera": self.camera,
            "seq": str(self.seq),
            "index": str(self.index),
            "ts": f"{self.captured_at:.6f}",
            "ts_dequeue": f"{self.dequeued_at:.6f}",
            "ts_done": f"{self.done_at:.6f}",
            "worker": self.worker,
            "w": str(self.width),
            "h": str(self.height),
            "faces": json.dumps(self.faces.to_list(), separators=(",", ":")),
        }
        if self.gap:
            fields["gap"] = self.gap
        return fields

    @classmethod
    def gap_marker(cls, frame: Frame, reason: str, worker: str, now: float) -> Result:
        """A frame's place in its camera's sequence, kept although it was not analysed, so the tracker
        need not wait for a result that will never come."""
        return cls(
            frame.camera,
            frame.seq,
            frame.index,
            frame.captured_at,
            now,
            now,
            worker,
            frame.width,
            frame.height,
            Faces(),
            reason,
        )

    @classmethod
    def from_fields(cls, fields: Mapping[Any, Any]) -> Result:
        return cls(
            **_frame_answer(fields),
            dequeued_at=_number(fields, "ts_dequeue"),
            done_at=_number(fields, "ts_done"),
            worker=_text(fields, "worker"),
            gap=_text(fields, "gap") if ("gap" in fields or b"gap" in fields) else "",
        )


@dataclass
class DeadLetter:
    """An entry no worker could use, kept with the reason (the frame's JPEG is left out, its size kept)."""

    camera: str
    entry_id: str
    reason: str
    worker: str
    at: float
    fields: dict[str, str]

    def to_fields(self) -> dict[str, str]:
        return {
            "v": str(SCHEMA_VERSION),
            "camera": self.camera,
            "entry": self.entry_id,
            "reason": self.reason,
            "worker": self.worker,
            "ts": f"{self.at:.6f}",
            "fields": json.dumps(self.fields),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[Any, Any]) -> DeadLetter:
        return cls(
            camera=_text(fields, "camera"),
            entry_id=_text(fields, "entry"),
            reason=_text(fields, "reason"),
            worker=_text(fields, "worker"),
            at=_number(fields, "ts"),
            fields=_json(fields, "fields"),
        )

    @staticmethod
    def summarize(fields: Mapping[Any, Any]) -> dict[str, str]:
        """The original fields as text, with binary payloads replaced by their size."""
        out = {}
        for key, value in fields.items():
            key = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
            if key == "jpeg" or (isinstance(value, bytes) and len(value) > 256):
                out[key] = f"<{len(value)} bytes>"
            else:
                out[key] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        return out


@dataclass
class TrackEntry:
    """The tracker's answer for one frame: every face with a stable track id and smoothed probabilities."""

    camera: str
    seq: int
    index: int
    captured_at: float
    tracked_at: float
    width: int
    height: int
    faces: Faces  # tracked: track ids and smoothed probabilities

    def to_fields(self) -> dict[str, str]:
        return {
            "v": str(SCHEMA_VERSION),
            "camera": self.camera,
            "seq": str(self.seq),
            "index": str(self.index),
            "ts": f"{self.captured_at:.6f}",
            "ts_tracked": f"{self.tracked_at:.6f}",
            "w": str(self.width),
            "h": str(self.height),
            "faces": json.dumps(self.faces.to_list(), separators=(",", ":")),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[Any, Any]) -> TrackEntry:
        return cls(**_frame_answer(fields), tracked_at=_number(fields, "ts_tracked"))


# --- camera sources: what `fervi cameras add` and the dashboard's Cameras page ask the supervisor to run --
WEBCAM_INDEX = re.compile(r"^[0-9]{1,2}$")
STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp")
SOURCE_MAX_CHARS = 1024
MIN_FPS, MAX_FPS = 0.1, 120.0  # as `fervi ingest --fps` takes them
INGEST_SOURCE_ENV = "FERVI_INGEST_SOURCE"  # `fervi ingest -` reads its source here (not in argv)


def source_kind(spec: str) -> str:
    """ "webcam" (an index), "stream" (an RTSP/HTTP URL) or "file" (a video, an image or a folder)."""
    if WEBCAM_INDEX.fullmatch(spec):
        return "webcam"
    return "stream" if "://" in spec else "file"


def check_source(spec: str) -> str:
    """A source the ingest can open, by its form: a webcam index 0-99, a URL of a streaming scheme, or an
    absolute path (the supervisor may run in another folder than whoever added it)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ProtocolError("empty source: give a webcam index (0), a stream URL (rtsp://...) or a file path")
    if len(spec) > SOURCE_MAX_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in spec):
        raise ProtocolError(f"a source is at most {SOURCE_MAX_CHARS} printable characters")
    kind = source_kind(spec)
    if kind == "stream":
        scheme = spec.split("://", 1)[0].lower()
        if scheme not in STREAM_SCHEMES:
            raise ProtocolError(f"unsupported stream scheme {scheme!r}: use one of {', '.join(STREAM_SCHEMES)}")
        try:
            parts = urlsplit(spec)
            parts.port  # noqa: B018 - a port that is not a number raises here
        except ValueError as err:
            raise ProtocolError(f"not a valid URL: {err}") from None
        if not parts.hostname:
            raise ProtocolError("the URL names no host")
    elif kind == "file" and not spec.startswith("/"):
        raise ProtocolError(f"{spec!r}: give the file's absolute path (starting with /)")
    return spec


def check_file_on_disk(path: str | Path) -> Path:
    """A file source as the ingest will find it: an existing regular file or folder (symlinks resolved), never
    a FIFO or a device, which would hang or never end. The one rule of `fervi cameras add` and the Cameras page
    (which also keeps it inside FERVI_CAMERA_FILE_ROOTS)."""
    resolved = Path(path).resolve()
    if not resolved.exists():
        raise ProtocolError(f"{path}: no such file or folder" + (" on the server" if resolved.is_absolute() else ""))
    if not (resolved.is_file() or resolved.is_dir()):
        raise ProtocolError(f"{path}: not a regular file or a folder")
    return resolved


def resolved_within(path: str | Path, roots: Iterable[str | Path]) -> Path | None:
    """`path` with its symlinks resolved when that lies inside one of the folders `roots` (also resolved),
    else None: the one check of where a file source may be read, when it is added and at every open."""
    resolved = Path(path).resolve()
    for root in roots:
        root = Path(root).resolve()
        if resolved == root or root in resolved.parents:
            return resolved
    return None


@dataclass
class CameraSource:
    """A camera the ingest supervisor keeps running: `source` as `fervi ingest` takes it, with its options."""

    camera: str
    source: str
    fps: float = 0.0  # 0: the source's own pace (files: as fast as the workers take them)
    loop: bool = False  # start a file again at its end
    live: bool | None = None  # None: webcams and URLs are live, files are not
    origin: str = "cli"  # who added it: "cli", "up", "dashboard"
    added_at: float = 0.0

    def __post_init__(self) -> None:
        check_camera(self.camera)
        if self.camera.startswith(RESERVED_PREFIXES):
            raise ProtocolError(f"camera names starting with {' or '.join(RESERVED_PREFIXES)} are the dashboard's own")
        check_source(self.source)
        if (
            isinstance(self.fps, bool)
            or not isinstance(self.fps, (int, float))
            or not math.isfinite(self.fps)
            or not (self.fps == 0 or MIN_FPS <= self.fps <= MAX_FPS)
        ):
            raise ProtocolError(f"fps must be 0 (the source's own pace) or within {MIN_FPS:g}..{MAX_FPS:g}")
        if not isinstance(self.loop, bool) or self.live not in (None, True, False):
            raise ProtocolError("loop and live must be true or false")

    @property
    def kind(self) -> str:
        return source_kind(self.source)

    def ingest_args(self, within: list[str] | None = None) -> list[str]:
        """The `fervi ingest` command line that runs this camera. The source itself goes in the environment
        (`INGEST_SOURCE_ENV`, see `ingest_env`): a stream's password stays out of the process list.
        `within`: folders a file source must stay inside each time it is opened."""
        args = ["ingest", "-", "--camera", self.camera]
        for folder in within or []:
            args += ["--within", folder]
        if self.fps:
            args += ["--fps", f"{self.fps:g}"]
        if self.loop:
            args.append("--loop")
        if self.live is not None:
            args.append("--live" if self.live else "--no-live")
        return args

    def ingest_env(self) -> dict[str, str]:
        return {INGEST_SOURCE_ENV: self.source}

    def to_json(self) -> str:
        return json.dumps(
            {
                "camera": self.camera,
                "source": self.source,
                "fps": self.fps,
                "loop": self.loop,
                "live": self.live,
                "origin": self.origin,
                "added_at": round(self.added_at, 3),
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> CameraSource:
        try:
            data = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
            if not isinstance(data, dict):
                raise ProtocolError("a camera source is a JSON object")
            return cls(
                str(data["camera"]),
                str(data["source"]),
                data.get("fps", 0),
                data.get("loop", False),
                data.get("live"),
                str(data.get("origin", "")),
                float(data.get("added_at") or 0),
            )
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
            raise ProtocolError(f"bad camera source: {err!r}") from None


SOURCE_STATES = ("starting", "live", "playing", "reconnecting", "ended", "error", "stopped")
