"""Prometheus metrics of FERVI processes, defined once so that every stage counts the same way."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

FRAMES_INGESTED = Counter("fervi_frames_ingested_total", "Frames added to a camera stream", ["camera"])
FRAMES_DROPPED = Counter("fervi_frames_dropped_total", "Live frames dropped at capture (source faster than fps)", ["camera"])
FRAMES_DONE = Counter("fervi_frames_done_total", "Frames with a published result", ["camera"])
FRAMES_SKIPPED = Counter("fervi_frames_skipped_total", "Live frames skipped as older than the age limit", ["camera"])
DEAD_LETTERS = Counter("fervi_dead_letters_total", "Entries sent to the dead-letter stream", ["camera"])
FRAMES_RECLAIMED = Counter("fervi_frames_reclaimed_total", "Frames taken over from a silent worker", ["camera"])
FACES = Counter("fervi_faces_total", "Faces detected and classified", ["camera"])
LATENCY = Histogram(
    "fervi_capture_to_result_seconds", "From capture to published result",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
BATCH_SECONDS = Histogram("fervi_worker_batch_seconds", "Worker time per batch", ["stage"],
                          buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2))
BAD_REDIS_VALUES = Counter("fervi_bad_redis_values_total",
                           "Names and entries read from Redis that do not parse (skipped)", ["kind"])
BACKLOG = Gauge("fervi_ingest_backlog_frames", "Frames waiting in a camera stream", ["camera"])
