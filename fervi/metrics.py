"""Prometheus metrics of FERVI processes, all defined here, once, so that every stage counts the same way
and a reader finds every metric name in one file. The dashboard's /metrics adds the pipeline's counters
read from Redis at scrape time (`fervi.dashboard.pipeline_metrics`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

FRAMES_INGESTED = Counter("fervi_frames_ingested_total", "Frames added to a camera stream", ["camera"])
FRAMES_DROPPED = Counter(
    "fervi_frames_dropped_total", "Live frames dropped at capture (source faster than fps)", ["camera"]
)
FRAMES_DONE = Counter("fervi_frames_done_total", "Frames with a published result", ["camera"])
FRAMES_SKIPPED = Counter("fervi_frames_skipped_total", "Live frames skipped as older than the age limit", ["camera"])
DEAD_LETTERS = Counter("fervi_dead_letters_total", "Entries sent to the dead-letter stream", ["camera"])
FRAMES_RECLAIMED = Counter("fervi_frames_reclaimed_total", "Frames taken over from a silent worker", ["camera"])
FACES = Counter("fervi_faces_total", "Faces detected and classified", ["camera"])
LATENCY = Histogram(
    "fervi_capture_to_result_seconds",
    "From capture to published result",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
BATCH_SECONDS = Histogram(
    "fervi_worker_batch_seconds",
    "Worker time per batch",
    ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2),
)
BAD_REDIS_VALUES = Counter(
    "fervi_bad_redis_values_total", "Names and entries read from Redis that do not parse (skipped)", ["kind"]
)
BACKLOG = Gauge("fervi_ingest_backlog_frames", "Frames waiting in a camera stream", ["camera"])

# tracker
TRACKED = Counter("fervi_frames_tracked_total", "Frames with a published tracks entry", ["camera"])
LATE = Counter("fervi_results_late_total", "Results that arrived after the reorder window passed them", ["camera"])
TRACK_SECONDS = Histogram(
    "fervi_tracker_frame_seconds", "Tracker time per frame", buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)
)

# dashboard
RELAY_LATENCY = Histogram(
    "fervi_dashboard_capture_to_tracks_seconds",
    "Capture to tracks entry, as the dashboard relays it",
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
WEB_FRAMES = Counter("fervi_dashboard_webcam_frames_total", "Browser camera frames", ["outcome"])
WEB_CONNECTIONS = Counter("fervi_dashboard_connections_total", "Socket.IO connections", ["outcome"])
WEB_CAMERAS = Gauge("fervi_dashboard_webcams", "Browser cameras of this dashboard process's clients")
UPLOADS = Counter("fervi_dashboard_uploads_total", "Images analysed in image mode", ["outcome"])
SUPERVISED = Gauge("fervi_supervisor_cameras", "Cameras whose ingest this supervisor runs")
INGEST_RESTARTS = Counter(
    "fervi_supervisor_ingest_restarts_total", "Ingest processes started again after exiting", ["camera"]
)
