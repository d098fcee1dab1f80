"""Workers' leases and hot cameras: what the cameras' assignment to workers (`workers/assignment.py`) is
computed from. A worker holds a lease (renewed every refresh, kept `ttl_s`): the live workers are those
whose lease runs; a worker that dies leaves the list when its lease runs out, one that stops leaves at once.
A camera's owner marks it hot while it cannot keep up, for a few seconds at a time."""

from __future__ import annotations

import time

from .core import REDIS_DOWN, BusCore, decode, sync
from .keys import HOT_CAMERAS, WORKER_LEASES, WORKER_WEIGHTS, bell_keys


class Leases(BusCore):
    def hold_worker_lease(self, worker: str, weight: float, ttl_s: float) -> dict[str, float]:
        """Renew `worker`'s lease and read the live workers with their weights, in one round trip."""
        now_ms = int(time.time() * 1000)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(WORKER_LEASES, {worker: now_ms + int(ttl_s * 1000)})
        pipe.hset(WORKER_WEIGHTS, worker, f"{weight:g}")
        pipe.zrangebyscore(WORKER_LEASES, now_ms, "+inf")
        pipe.hgetall(WORKER_WEIGHTS)
        _, _, live, weights = pipe.execute()
        out = _weighted(live, weights)
        out.setdefault(worker, weight)
        return out

    def live_workers(self) -> dict[str, float]:
        """The workers whose lease runs, with their weights (read only: for status pages and tests)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrangebyscore(WORKER_LEASES, int(time.time() * 1000), "+inf")
        pipe.hgetall(WORKER_WEIGHTS)
        live, weights = pipe.execute()
        return _weighted(live, weights)

    def forget_dead_workers(self, older_than_s: float = 60.0) -> None:
        """Leases that ran out long ago, and their weights, go (any worker may do it now and then)."""
        limit = int((time.time() - older_than_s) * 1000)
        dead = [decode(m) for m in sync(self.redis.zrangebyscore(WORKER_LEASES, "-inf", limit))]
        if dead:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrem(WORKER_LEASES, *dead)
            pipe.hdel(WORKER_WEIGHTS, *dead)
            if self.bells:  # their doorbells
                pipe.delete(*[k for w in dead for k in bell_keys(w)])
            pipe.execute()

    def leave_workers(self, worker: str) -> None:
        """A worker that stops gives its cameras up at once (others take them at their next refresh)."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrem(WORKER_LEASES, worker)
            pipe.hdel(WORKER_WEIGHTS, worker)
            if self.bells:
                pipe.delete(*bell_keys(worker))
            pipe.execute()
        except REDIS_DOWN:
            pass  # its lease runs out by itself

    def mark_hot(self, cameras: list[str], ttl_s: float) -> None:
        """Cameras whose owner cannot keep up, for `ttl_s` from now (renewed while they stay so)."""
        if cameras:
            until = int((time.time() + ttl_s) * 1000)
            self.redis.zadd(HOT_CAMERAS, dict.fromkeys(cameras, until))

    def hot_cameras(self) -> list[str]:
        now_ms = int(time.time() * 1000)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zremrangebyscore(HOT_CAMERAS, "-inf", now_ms)
        pipe.zrange(HOT_CAMERAS, 0, -1)
        return [decode(m) for m in pipe.execute()[1]]


def _weighted(live: list[bytes], weights: dict[bytes, bytes]) -> dict[str, float]:
    out = {}
    for member in live:
        try:
            out[decode(member)] = max(0.01, float(weights.get(member, b"1")))
        except ValueError:  # a weight some client spoilt
            out[decode(member)] = 1.0
    return out
