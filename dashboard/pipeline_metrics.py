"""Pipeline-wide counters for the dashboard's /metrics, read from Redis at scrape time (a custom collector),
so one scrape shows every camera whatever process did the work."""

from __future__ import annotations

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from fervi.bus import Bus, results_key, seq_key


class PipelineCollector:
    def __init__(self, client: redis.Redis):
        self.bus = Bus(client)
        self.redis = client

    def collect(self):
        frames_in = CounterMetricFamily("fervi_camera_frames_in", "Frames added to a camera stream", labels=["camera"])
        results = GaugeMetricFamily("fervi_camera_results_kept", "Result entries kept in a camera's results stream",
                                    labels=["camera"])
        skipped = CounterMetricFamily("fervi_camera_frames_skipped", "Stale live frames skipped", labels=["camera"])
        dead = CounterMetricFamily("fervi_camera_dead_letters", "Entries dead-lettered", labels=["camera"])
        backlog = GaugeMetricFamily("fervi_camera_backlog", "Frames waiting for a worker", labels=["camera"])
        try:
            for camera in self.bus.cameras():
                stats = self.bus.stats(camera)
                frames_in.add_metric([camera], float(self.redis.get(seq_key(camera)) or 0))
                results.add_metric([camera], float(self.redis.xlen(results_key(camera))))
                skipped.add_metric([camera], float(stats.get("skipped", 0)))
                dead.add_metric([camera], float(stats.get("dead_lettered", 0)))
                backlog.add_metric([camera], float(self.bus.backlog(camera)))
        except redis.RedisError:
            pass  # /metrics stays up while Redis is away; /healthz says why
        yield from (frames_in, results, skipped, dead, backlog)
