"""The bus: the only code that talks to Redis. Stages call `Bus` methods in protocol types (`Frame`,
`Result`, `TrackEntry`, camera names) and never spell a key, a group or a Redis command.

- `keys`: every key name (`camera_of(key)` turns a per-camera key back into its camera);
- `scripts`: the Lua scripts that change several keys atomically;
- `streams`: cameras, frames, results, dead letters, counters (ingest, workers);
- `tracks`: the tracks stream and the statistics the tracker writes (tracker, dashboard, reports);
- `webcams`: browser and one-off cameras; `challenge`: rounds and leaderboard; `videos`: uploaded videos;
  `queue`: the RQ queue of video jobs (`Bus.queue`), its registries, stop command and workers, and the only
  module that imports RQ (imported by the offline stage and the dashboard, not by `Bus`'s users at large);
  `processes`: heartbeats and the relay lock; `leases`: workers' leases and hot cameras (the cameras'
  assignment to workers); `sources`: the cameras the ingest supervisor runs, their
  ingest state and leases.

Anything read from Redis may have been written by any client: what does not parse is skipped and counted
(`fervi_bad_redis_values_total`), never allowed to end a process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .challenge import Challenge
from .core import (
    REDIS_DOWN,
    REFUSING_WRITES,
    Entry,
    RedisError,
    RedisRefused,
    RedisUnreachable,
    camera_name,
    connect,
    is_cluster_url,
    node_url,
    process_id,
    redis_trouble,
    refuses_writes,
)
from .keys import *  # noqa: F403 - key names are part of the bus's interface (tests, docs/protocol.md)
from .keys import VIDEO_QUEUE, camera_of
from .leases import Leases
from .processes import Processes
from .sources import RegistryFull, Sources
from .tracks import RESOLUTIONS, Tracks, frame_rates
from .videos import Videos
from .webcams import Webcams

if TYPE_CHECKING:  # RQ is imported only by the processes that use the queue
    from .queue import VideoQueue


class Bus(Webcams, Tracks, Challenge, Videos, Processes, Sources, Leases):
    """One Redis connection and every operation FERVI does on it (see the modules above)."""

    def queue(self, name: str, **kwargs: Any) -> VideoQueue:
        """The RQ queue `name` (offline jobs) on `jobs`: a `queue.VideoQueue`. RQ is imported here, so only
        the processes that use the queue import it."""
        from .queue import VideoQueue

        return VideoQueue(name, connection=self.jobs, **kwargs)

    def rq_workers(self) -> dict[str, dict[str, str]]:
        """RQ's own registry of its workers (they keep no FERVI heartbeat): name -> kind, host, state, job."""
        return self.queue(VIDEO_QUEUE).workers()


__all__ = [
    "Bus",
    "Entry",
    "REDIS_DOWN",
    "REFUSING_WRITES",
    "RESOLUTIONS",
    "RedisError",
    "RedisRefused",
    "RedisUnreachable",
    "RegistryFull",
    "camera_name",
    "camera_of",
    "connect",
    "frame_rates",
    "is_cluster_url",
    "node_url",
    "process_id",
    "redis_trouble",
    "refuses_writes",
]
