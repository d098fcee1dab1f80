"""The bus: the only code that talks to Redis. Stages call `Bus` methods in protocol types (`Frame`,
`Result`, `TrackEntry`, camera names) and never spell a key, a group or a Redis command.

- `keys`: every key name (`camera_of(key)` turns a per-camera key back into its camera);
- `scripts`: the Lua scripts that change several keys atomically;
- `streams`: cameras, frames, results, dead letters, counters (ingest, workers);
- `tracks`: the tracks stream and the statistics the tracker writes (tracker, dashboard, reports);
- `webcams`: browser and one-off cameras; `challenge`: rounds and leaderboard; `videos`: uploaded videos and
  the RQ queue; `processes`: heartbeats and the relay lock; `sources`: the cameras the ingest supervisor
  runs, their ingest state and leases.

Anything read from Redis may have been written by any client: what does not parse is skipped and counted
(`fervi_bad_redis_values_total`), never allowed to end a process.
"""

from __future__ import annotations

from .challenge import Challenge
from .core import (REDIS_DOWN, Entry, RedisError, RedisRefused, RedisUnreachable, camera_name, connect, is_cluster_url,
                   node_url, process_id)
from .keys import *  # noqa: F403 - key names are part of the bus's interface (tests, docs/protocol.md)
from .keys import camera_of
from .processes import Processes
from .sources import RegistryFull, Sources
from .tracks import RESOLUTIONS, Tracks
from .videos import Videos
from .webcams import Webcams


class Bus(Webcams, Tracks, Challenge, Videos, Processes, Sources):
    """One Redis connection and every operation FERVI does on it (see the modules above)."""


__all__ = ["Bus", "Entry", "REDIS_DOWN", "RESOLUTIONS", "RedisError", "RedisRefused", "RedisUnreachable", "RegistryFull",
           "camera_name", "camera_of", "connect", "is_cluster_url", "node_url", "process_id"]
