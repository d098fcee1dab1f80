"""A worker's batch is bounded in decoded bytes whatever the number of cameras (issue #27, defect 4). Before:
64 cameras each queueing one 4096x4096 frame made one batch of 64 decoded frames (3.6 GB); the worker
crash-looped under a 3 GB cap with no result. bench/worker_memory.py measures it."""

from __future__ import annotations

import time

from fervi.bench.worker_memory import big_frame, run
from fervi.workers.core import BATCH_PIXEL_FRAMES, triage

from fervi.bus import Entry
from fervi.protocol import Frame


def _big_entry(camera: str, size: int, jpeg: bytes) -> Entry:
    fields = {**Frame(camera, time.time(), size, size, jpeg, live=False).to_fields(), "seq": "0"}
    return Entry(camera, "1-0", {k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in fields.items()})


def test_a_batch_decodes_at_most_its_pixel_budget_and_defers_the_rest():
    size = 1024
    jpeg = big_frame(size)
    entries = [_big_entry(f"cam{i}", size, jpeg) for i in range(10)]
    batch = triage(entries, "w", time.time(), max_age_s=2.0, max_pixels=size * size, per_camera=1)
    assert len(batch.work) == BATCH_PIXEL_FRAMES
    assert [e.camera for e in batch.deferred] == [f"cam{i}" for i in range(BATCH_PIXEL_FRAMES, 10)]
    assert not batch.dead and not batch.gaps  # deferred, not skipped: they wait for the next batches
    one = triage(entries[:1], "w", time.time(), max_age_s=2.0, max_pixels=size * size // 4)
    assert len(one.dead) == 1  # a frame over the limit is still refused, not deferred


def test_a_worker_with_many_cameras_of_large_frames_stays_within_its_budget():
    report = run(cameras=12, size=4096, timeout_s=300)
    assert report["results"] == 12 and report["worker_exited"] is None, report
    # 12 decoded 4096x4096 frames alone are 576 MB; the batch holds 2 of them (96 MB) beside the model
    assert report["worker_peak_rss_mb"] < 900, report
