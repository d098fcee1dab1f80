"""One clock for every host: Redis's.

Hosts' clocks drift apart; a live frame's age and a statistic's second must not depend on which host stamped
them. Two rules:

- a worker measures a live frame's age by Redis's clock: the time Redis gave the frame's stream entry (its
  id's milliseconds) against Redis's time now, which the worker knows as its own time plus the offset this
  module measures. Skew between the ingest host, the worker host and Redis cannot make fresh frames look old;
- an ingest stamps its frames in Redis's time where its own clock is more than `TOLERANCE_S` off (capture
  times and so the statistics' seconds stay sane), says so in its log and its camera's state (the Cameras
  page and `fervi status` show it), and leaves them as they are otherwise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

TOLERANCE_S = 1.0  # a host clock this far from Redis's is corrected and reported
CHECK_EVERY_S = 30.0  # how often the offset is measured again (one TIME command)


class ServerClock:
    """This host's clock against the server's: `offset_s` = server time - local time, measured with
    `server_time()` (Redis's TIME) at most every `every_s`, halfway through the call's round trip."""

    def __init__(
        self, server_time: Callable[[], float], every_s: float = CHECK_EVERY_S, tolerance_s: float = TOLERANCE_S
    ):
        self.server_time = server_time
        self.every_s = every_s
        self.tolerance_s = tolerance_s
        self.offset_s = 0.0
        self.measured_at = float("-inf")

    def measure(self, force: bool = False) -> float:
        """The offset, measured again when due (or `force`)."""
        now = time.monotonic()
        if force or now - self.measured_at >= self.every_s:
            before = time.time()
            server = self.server_time()
            after = time.time()
            self.offset_s = server - (before + after) / 2
            self.measured_at = now
        return self.offset_s

    @property
    def skewed(self) -> bool:
        return abs(self.offset_s) > self.tolerance_s

    def correction_s(self) -> float:
        """What to add to this host's time to stamp in the server's: the offset where it is past the
        tolerance, else 0 (NTP-synced hosts keep their own, finer stamps)."""
        return self.offset_s if self.skewed else 0.0

    def server_now(self) -> float:
        return time.time() + self.offset_s


def skew_text(offset_s: float) -> str:
    """ "2.0 s behind" / "1.0 h ahead": how a host's clock stands against Redis's, for people."""
    seconds = round(abs(offset_s), 1)  # measured 3599.98 s off is "1.0 h", as 3600.02 s is
    amount = f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.1f} s"
    return f"{amount} {'behind' if offset_s > 0 else 'ahead of'} the Redis server's clock"


def clock_warning(source_state: dict[str, Any]) -> str:
    """What to tell people about the clock of a camera's ingest host, from its state (`clock_offset_s`):
    "" while within `TOLERANCE_S` (the Cameras page and `fervi status` show it)."""
    try:
        offset = float(source_state.get("clock_offset_s") or 0)
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(offset) or abs(offset) <= TOLERANCE_S:
        return ""
    return f"Its ingest host's clock is {skew_text(offset)}: its frames are stamped in Redis's time. Sync it (NTP)."
