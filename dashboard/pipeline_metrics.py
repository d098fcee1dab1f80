"""Pipeline-wide counters for the dashboard's /metrics, read from Redis at scrape time (a custom collector),
so one scrape shows every camera whatever process did the work. Browser and image-mode cameras are summed
under "browser" and "image" (see `metric_camera`)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from fervi.bus import Bus, RedisError
from fervi.protocol import metric_camera


class PipelineCollector:
    def __init__(self, bus: Bus):
        self.bus = bus

    def collect(self) -> Iterator[Metric]:
        frames_in = CounterMetricFamily("fervi_camera_frames_in", "Frames added to a camera stream", labels=["camera"])
        results = GaugeMetricFamily(
            "fervi_camera_results_kept", "Result entries kept in a camera's results stream", labels=["camera"]
        )
        skipped = CounterMetricFamily(
            "fervi_camera_frames_skipped",
            "Live frames skipped (stale, or thinned out while the workers were behind)",
            labels=["camera"],
        )
        dead = CounterMetricFamily("fervi_camera_dead_letters", "Entries dead-lettered", labels=["camera"])
        backlog = GaugeMetricFamily("fervi_camera_backlog", "Frames waiting for a worker", labels=["camera"])
        skipped_ratio = GaugeMetricFamily(
            "fervi_camera_skipped_ratio",
            "Share of a camera's recent frames (its last 60 tracked) the workers skipped; the worst camera of a group",
            labels=["camera"],
        )
        ratios: dict[str, float] = {}
        families: tuple[CounterMetricFamily | GaugeMetricFamily, ...] = (frames_in, results, skipped, dead, backlog)
        totals: dict[str, list[float]] = {}  # metric label -> frames in, results kept, skipped, dead, backlog
        try:
            for camera in self.bus.cameras():
                stats = self.bus.stats(camera)
                row = totals.setdefault(metric_camera(camera), [0.0] * 5)
                for i, value in enumerate(
                    (
                        max(0, self.bus.last_seq(camera)),
                        self.bus.results_kept(camera),
                        stats.get("skipped", 0),
                        stats.get("dead_lettered", 0),
                        self.bus.backlog(camera),
                    )
                ):
                    row[i] += float(value)
                ratio = self.bus.frame_rates(camera)["skipped_pct"] / 100
                ratios[metric_camera(camera)] = max(ratios.get(metric_camera(camera), 0.0), ratio)
        except RedisError:
            pass  # /metrics stays up while Redis is away; /healthz says why
        for label, row in sorted(totals.items()):
            for family, total in zip(families, row, strict=True):
                family.add_metric([label], total)
        for label, ratio in sorted(ratios.items()):
            skipped_ratio.add_metric([label], ratio)
        yield from (*families, skipped_ratio)
