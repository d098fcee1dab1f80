"""Rate limits for Socket.IO clients: a token bucket, and one per client address."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate: float  # tokens per second
    burst: float
    tokens: float = -1.0
    updated: float = field(default_factory=time.monotonic)

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if self.tokens < 0:
            self.tokens = self.burst
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class AddressLimits:
    """A token bucket per client address, so a client that reconnects keeps its limit. Buckets idle long
    enough to be full again are dropped, so the table stays as small as the set of recent addresses."""

    def __init__(self, rate: float, burst: float, max_addresses: int = 10000):
        self.rate, self.burst = rate, burst
        self.buckets: dict[str, TokenBucket] = {}
        self.max_addresses = max_addresses

    def take(self, address: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if len(self.buckets) >= self.max_addresses:
            full_after = self.burst / self.rate
            self.buckets = {a: b for a, b in self.buckets.items() if now - b.updated < full_after}
        bucket = self.buckets.get(address)
        if bucket is None:
            if len(self.buckets) >= self.max_addresses:
                return False  # this many distinct addresses within one refill time: refuse new ones
            bucket = self.buckets[address] = TokenBucket(self.rate, self.burst, updated=now)
        return bucket.take(now)
