"""The worker's pure core: bad entries become dead letters with a reason, stale live frames are skipped."""

from __future__ import annotations

import collections
import time
from itertools import pairwise

from fervi.workers.core import spread_evenly, triage

from fervi.bus import Entry
from fervi.protocol import Frame

from .images import corrupt_jpeg, demo_jpeg, jpeg_claiming_size


def _entry(i: int, **fields) -> Entry:
    base = {**Frame("cam", time.time(), 640, 480, demo_jpeg(), live=False).to_fields(), "seq": str(i)}
    base.update(fields)
    return Entry("cam", f"{i}-0", {k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in base.items()})


def test_triage_sorts_good_stale_and_bad_entries():
    now = time.time()
    entries = [
        _entry(1),
        _entry(2, jpeg=corrupt_jpeg()),
        _entry(3, jpeg=b""),
        _entry(4, jpeg=jpeg_claiming_size(20000, 20000)),
        _entry(5, live="1", ts=str(now - 60)),
        _entry(6, live="0", ts=str(now - 60)),  # file frames are never skipped, however old
        Entry("cam", "7-0", {b"v": b"1", b"camera": b"cam"}),
        _entry(8, camera="other"),
    ]
    batch = triage(entries, "w", now, max_age_s=2.0, max_pixels=4096 * 4096)
    assert [w.frame.seq for w in batch.work] == [1, 6]
    assert [e.entry_id for e in batch.skipped] == ["5-0"]
    reasons = {d.entry_id: d.reason for d in batch.dead}
    assert "corrupt image" in reasons["2-0"] or "not a readable image" in reasons["2-0"]  # by Pillow version
    assert "empty jpeg" in reasons["3-0"]
    assert "too large" in reasons["4-0"]
    assert "missing field" in reasons["7-0"]
    assert "does not match stream" in reasons["8-0"]
    assert batch.dead[0].fields["jpeg"].startswith("<")
    # the tracker hears of every frame it would otherwise wait for: skipped, and dead with a readable header
    assert [(m.seq, m.gap, len(m.faces)) for _, m in batch.gaps] == [(2, "dead", 0), (4, "dead", 0), (5, "skipped", 0)]
    assert [e.entry_id for e, _ in batch.gaps] == ["2-0", "4-0", "5-0"]


def test_spread_evenly_keeps_the_newest_and_even_steps():
    assert spread_evenly(3, 5) == [0, 1, 2]
    assert spread_evenly(18, 2) == [8, 17]
    assert spread_evenly(60, 4) == [14, 29, 44, 59]
    for n, k in [(7, 3), (64, 5), (100, 7)]:
        kept = spread_evenly(n, k)
        steps = [b - a for a, b in pairwise(kept)]
        assert len(kept) == k and kept[-1] == n - 1 and max(steps) - min(steps) <= 1


def _live(camera: str, seq: int, ts: float) -> Entry:
    fields = {**Frame(camera, ts, 640, 480, demo_jpeg(), live=True).to_fields(), "seq": str(seq)}
    return Entry(
        camera, f"{seq}-0", {k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in fields.items()}
    )


def test_overloaded_live_cameras_get_the_same_share_spread_evenly_and_files_none_skipped():
    """Three live cameras, one 4x busier, and a file: each live camera keeps `per_camera` frames, evenly
    spaced and ending with its newest; the file keeps every frame; stale frames are skipped as before."""
    now = time.time()
    entries = []
    for camera, fps in (("a", 15), ("b", 15), ("busy", 60)):
        entries += [_live(camera, seq, now - 0.9 + seq / fps) for seq in range(int(0.9 * fps))]
    entries.append(_live("a", 99, now - 5.0))  # stale: skipped by age
    entries += [_entry(i) for i in range(5)]  # a file camera ("cam"): never thinned
    batch = triage(entries, "w", now, max_age_s=2.0, max_pixels=4096 * 4096, per_camera=3)
    kept: dict[str, list[int]] = {}
    for work in batch.work:
        kept.setdefault(work.frame.camera, []).append(work.frame.seq)
    assert kept == {"a": [4, 8, 12], "b": [4, 8, 12], "busy": [17, 35, 53], "cam": [0, 1, 2, 3, 4]}
    skipped = collections.Counter(e.camera for e in batch.skipped)
    assert skipped == {"a": 13 - 3 + 1, "b": 13 - 3, "busy": 54 - 3}
    # every frame read is either analysed or has its gap marker: the tracker waits for none
    assert len(batch.work) + len(batch.gaps) == len(entries)
