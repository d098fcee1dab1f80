"""The process registry: each FERVI process's heartbeat (a hash with a TTL), and the dashboard relay's lock."""

from __future__ import annotations

from .core import REDIS_DOWN, BusCore, decode, sync
from .keys import DASHBOARD_RELAY_LOCK, PROCESSES


class Processes(BusCore):
    def heartbeat(self, proc: str, info: dict[str, object], ttl_s: int) -> None:
        key = PROCESSES + proc
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping={k: str(v) for k, v in info.items()})
        pipe.expire(key, ttl_s)
        pipe.execute()

    def forget(self, proc: str) -> None:
        """Leave the process registry on exit; with Redis away, the heartbeat's TTL does it instead."""
        try:
            self.redis.delete(PROCESSES + proc)
        except REDIS_DOWN:
            pass

    def processes(self) -> dict[str, dict[str, str]]:
        out = {}
        for key in self.redis.scan_iter(match=PROCESSES + "*", count=200):
            info = sync(self.redis.hgetall(key))
            if info:
                out[decode(key)[len(PROCESSES) :]] = {decode(k): decode(v) for k, v in info.items()}
        return out

    def hold_relay_lock(self, name: str, ttl_s: int) -> bool:
        """Take or renew the lock that makes one dashboard process the relay; False while another holds it."""
        if self.redis.set(DASHBOARD_RELAY_LOCK, name, nx=True, ex=ttl_s):
            return True
        if self.redis.get(DASHBOARD_RELAY_LOCK) == name.encode():
            self.redis.expire(DASHBOARD_RELAY_LOCK, ttl_s)
            return True
        return False
