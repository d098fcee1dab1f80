"""The worker's pure core: bad entries become dead letters with a reason, stale live frames are skipped."""

from __future__ import annotations

import time

from fervi.workers.core import triage

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
