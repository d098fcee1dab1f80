"""What every part of the bus shares: the connection, its scripts, and the rule that anything read from
Redis may have been written by any client."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

import redis

from ..protocol import ProtocolError, check_camera
from . import scripts
from .keys import camera_of

log = logging.getLogger("fervi.bus")

RedisError = redis.RedisError  # what a stage catches around bus calls, without importing redis
RedisRefused = redis.ResponseError  # a command Redis refused (WRONGTYPE: a key some client spoilt)
RedisUnreachable = (redis.ConnectionError, redis.TimeoutError)  # no answer from the server
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, ConnectionError, OSError)


@dataclass
class Entry:
    camera: str
    entry_id: str
    fields: dict


def connect(url: str, **kwargs) -> redis.Redis:
    """A client with timeouts and keepalive, so a lost server is noticed instead of hanging."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=5, socket_timeout=kwargs.pop("socket_timeout", 30),
        socket_keepalive=True, health_check_interval=10, **kwargs,
    )


def process_id(kind: str) -> str:
    return f"{kind}-{socket.gethostname()}-{os.getpid()}"


def decode(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def stream_id(entry_id) -> tuple[int, int]:
    ms, _, seq = decode(entry_id).partition("-")
    return int(ms), int(seq or 0)


class Untrusted:
    """Anything in Redis may have been written by any client: what does not parse is skipped, counted, and
    logged once per value, never allowed to end a process."""

    def __init__(self, limit: int = 1000):
        self.seen: set = set()
        self.limit = limit

    def skip(self, kind: str, value, reason: str) -> None:
        from ..metrics import BAD_REDIS_VALUES

        BAD_REDIS_VALUES.labels(kind).inc()
        if value not in self.seen and len(self.seen) < self.limit:
            self.seen.add(value)
            shown = repr(value)
            shown = shown if len(shown) <= 80 else f"{shown[:77]}..."
            log.warning("event=bad_redis_value kind=%s value=%s reason=%s", kind, shown, reason)


def camera_name(value) -> str:
    """A camera set member as a camera name; ProtocolError when it is not UTF-8 or not a valid name."""
    try:
        return check_camera(value.decode("utf-8") if isinstance(value, bytes) else str(value))
    except UnicodeDecodeError:
        raise ProtocolError(f"camera name {value!r} is not UTF-8") from None


class BusCore:
    def __init__(self, client: redis.Redis):
        self.redis = client
        self._add_frame = client.register_script(scripts.ADD_FRAME)
        self._publish = client.register_script(scripts.PUBLISH_RESULT)
        self._admit_webcam = client.register_script(scripts.ADMIT_WEBCAM)
        self._leave_webcam = client.register_script(scripts.LEAVE_WEBCAM)
        self._update_if_exists = client.register_script(scripts.UPDATE_IF_EXISTS)
        self._record_game = client.register_script(scripts.RECORD_GAME)
        self._renew_lease = client.register_script(scripts.RENEW_LEASE)
        self._release_lease = client.register_script(scripts.RELEASE_LEASE)
        self._add_source = client.register_script(scripts.ADD_SOURCE)
        self.untrusted = Untrusted()

    @classmethod
    def from_url(cls, url: str, **kwargs):
        return cls(connect(url, **kwargs))

    def ping(self) -> bool:
        return bool(self.redis.ping())

    def execute(self, pipe, kind: str, what) -> list:
        """Run a pipeline of writes whose keys any client could have spoilt: every command runs, and one that
        Redis refuses (a key of another type, a field that is not a number) is skipped, not raised."""
        replies = pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                self.untrusted.skip(kind, what, str(reply))
        return replies

    def _read_after(self, key_of, positions: dict[str, str], count: int, block_ms: int) -> list[tuple[str, list]]:
        """XREAD of one stream per camera after its position: (camera, [(entry id, fields)]) per camera."""
        reply = self.redis.xread({key_of(c): p for c, p in positions.items()}, count=count, block=block_ms)
        return [(camera_of(stream), [(decode(i), f) for i, f in items]) for stream, items in reply or []]

    def memory_info(self) -> dict:
        """The server's INFO memory section (used_memory, used_memory_rss, ... in bytes)."""
        return self.redis.info("memory")
