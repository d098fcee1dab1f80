"""Stream entries round-trip through the protocol classes, and malformed ones are refused with a reason."""

from __future__ import annotations

import numpy as np
import pytest

from fervi.protocol import SCHEMA_VERSION, DeadLetter, Faces, Frame, ProtocolError, Result, check_camera


def _as_redis(fields: dict) -> dict:
    """What redis-py returns: bytes keys and values."""
    return {k.encode(): (v if isinstance(v, bytes) else str(v).encode()) for k, v in fields.items()}


def test_frame_round_trip():
    frame = Frame("lobby", 1700000000.25, 640, 480, b"\xff\xd8jpeg", live=False, index=7)
    fields = _as_redis({**frame.to_fields(), "seq": 42})
    back = Frame.from_fields(fields)
    assert back == Frame("lobby", 1700000000.25, 640, 480, b"\xff\xd8jpeg", False, 7, 42)


def test_result_round_trip():
    probs = np.array([[0.1, 0, 0, 0.8, 0, 0, 0.1]], np.float32)
    faces = Faces(np.array([[10, 20, 30, 40]], np.float32), np.array([0.9], np.float32), probs)
    result = Result("lobby", 3, 2, 1.0, 1.5, 1.75, "w1", 640, 480, faces)
    back = Result.from_fields(_as_redis(result.to_fields()))
    assert back.seq == 3 and back.worker == "w1" and back.faces.labels == ["happy"]
    assert np.allclose(back.faces.boxes, faces.boxes) and np.allclose(back.faces.probs, probs)


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"v": "99"}, "unsupported schema version 99"),
        ({"ts": "yesterday"}, "field 'ts' is not a float"),
        ({"jpeg": b""}, "empty jpeg"),
        ({"camera": "../etc"}, "invalid camera name"),
    ],
)
def test_bad_frames_are_refused(change, reason):
    fields = {**Frame("cam", 1.0, 1, 1, b"x").to_fields(), "seq": "1", **change}
    with pytest.raises(ProtocolError, match=reason):
        Frame.from_fields(_as_redis(fields))


def test_missing_field():
    fields = Frame("cam", 1.0, 1, 1, b"x").to_fields()
    del fields["ts"]
    with pytest.raises(ProtocolError, match="missing field 'ts'"):
        Frame.from_fields(_as_redis({**fields, "seq": 1}))


@pytest.mark.parametrize("name", ["", "a/b", "a b", "{x}", "..", "a" * 65, "-lead"])
def test_camera_names_with_path_or_key_characters_are_refused(name):
    with pytest.raises(ProtocolError):
        check_camera(name)


def test_dead_letter_keeps_reason_not_payload():
    summary = DeadLetter.summarize({b"jpeg": b"\x00" * 5000, b"camera": b"cam"})
    assert summary == {"jpeg": "<5000 bytes>", "camera": "cam"}
    letter = DeadLetter("cam", "1-0", "corrupt", "w", 2.0, summary)
    assert DeadLetter.from_fields(_as_redis(letter.to_fields())) == letter
    assert SCHEMA_VERSION == 1


def test_gap_marker_round_trip():
    frame = Frame("cam", 12.5, 640, 480, b"jpeg", live=True, index=7, seq=42)
    marker = Result.from_fields(
        {k.encode(): v.encode() for k, v in Result.gap_marker(frame, "skipped", "w1", 13.0).to_fields().items()}
    )
    assert (marker.seq, marker.index, marker.gap, len(marker.faces), marker.captured_at) == (42, 7, "skipped", 0, 12.5)
    assert "gap" not in Result("cam", 1, 0, 1.0, 1.0, 1.0, "w", 2, 2, Faces()).to_fields()
