"""What every part of the bus shares: the connection, its scripts, and the rule that anything read from
Redis may have been written by any client."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self, TypeVar, cast

import redis
from redis._parsers import BaseParser
from redis.commands.core import Script
from redis.typing import EncodableT, FieldT, KeyT, StreamIdT

from ..protocol import ProtocolError, check_camera
from . import scripts
from .keys import PREFIX, camera_of

log = logging.getLogger("fervi.bus")

T = TypeVar("T")

RedisError = redis.RedisError  # what a stage catches around bus calls, without importing redis
RedisRefused = redis.ResponseError  # a command Redis refused (WRONGTYPE: a key some client spoilt)
RedisUnreachable = (redis.ConnectionError, redis.TimeoutError)  # no answer from the server


class WritesRefused(redis.ResponseError):
    """MISCONF: Redis refuses writes because it cannot persist them (a full disk, a failed save)."""


# redis-py names the OOM (maxmemory, noeviction) and READONLY (a replica) replies by class but leaves
# MISCONF a plain ResponseError: its parsers look error prefixes up in this one table, so it is named here
BaseParser.EXCEPTION_CLASSES.setdefault("MISCONF", WritesRefused)
# Redis is up but refuses writes until an operator (or eviction) frees memory or disk: waited out, like an
# unreachable server, never taken for a key some client spoilt
REFUSING_WRITES = (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError, WritesRefused)
REDIS_DOWN = (
    *REFUSING_WRITES,
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    ConnectionError,
    OSError,
    # a Redis Cluster with a shard down or its slots moving: wait and retry, as for one server away
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.ClusterError,
)


def refuses_writes(err: BaseException) -> str:
    """The code ("OOM", "MISCONF", "READONLY") when `err` is Redis refusing writes, else "". Redis 7 passes a
    script's refusal on as it is; Redis 6.2 wraps it in the script's error ("... -OOM command not allowed")."""
    for code, kind in zip(("OOM", "READONLY", "MISCONF"), REFUSING_WRITES, strict=True):
        if isinstance(err, kind) or (isinstance(err, redis.ResponseError) and f"-{code} " in str(err)):
            return code
    return ""


def redis_trouble(err: BaseException) -> str:
    """What is wrong with Redis, in a line for logs and /healthz: "refusing writes: OOM ..." or "unreachable: ...".
    Without the failed command's arguments (redis-py puts a pipeline's command, frames and all, in front)."""
    text = str(err).rpartition(" of pipeline caused error: ")[2]
    text = text.encode("ascii", "replace").decode()[:200] or type(err).__name__
    code = refuses_writes(err)
    return f"refusing writes: {code} {text}" if code else f"unreachable: {text}"


@dataclass
class Entry:
    camera: str
    entry_id: str
    fields: dict[Any, Any]  # as redis-py returns them: bytes keys and values


# One Redis server, or a Redis Cluster: redis-py gives the two clients the same commands but no common base class
Client = redis.Redis | redis.RedisCluster

CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
CLUSTER_IDLE_POLL_S = 0.02  # on a cluster, stream reads poll (a blocking read spans one slot): the first wait,
CLUSTER_IDLE_POLL_MAX_S = 0.2  # doubled while nothing comes, up to this


def sync(reply: Awaitable[T] | T) -> T:
    """A reply of FERVI's clients, which are all sync: redis-py types each command for its asyncio client too
    (`Awaitable[T] | T`), so this is where the sync half is picked, once, for the type checker."""
    return cast(T, reply)


def entry_fields(fields: Mapping[str, str | bytes]) -> dict[FieldT, EncodableT]:
    """A protocol type's `to_fields()` as XADD takes it (the same dict: only its declared type is wider)."""
    return cast("dict[FieldT, EncodableT]", fields)


def is_cluster_url(url: str) -> bool:
    """`redis+cluster://HOST:PORT` (any node of a Redis Cluster; a password in the URL works)."""
    return url.startswith(CLUSTER_SCHEMES)


def connect(url: str, **kwargs: Any) -> Client:
    """A client with timeouts and keepalive, so a lost server is noticed instead of hanging; a
    `redis+cluster://` URL gives a `RedisCluster` client that follows the cluster's slots."""
    options = dict(
        socket_connect_timeout=5,
        socket_timeout=kwargs.pop("socket_timeout", 30),
        socket_keepalive=True,
        health_check_interval=10,
        **kwargs,
    )
    if is_cluster_url(url):
        cluster = redis.RedisCluster.from_url(url.replace("+cluster", "", 1), **options)
        _stream_keys_known(cluster)
        return cluster
    return redis.Redis.from_url(url, **options)


def stream_read_keys(args: tuple[Any, ...]) -> list[Any] | None:
    """The keys of an XREAD or XREADGROUP (those after STREAMS: half of what follows it); None for another
    command, or one without STREAMS."""
    if not args or decode(args[0]).upper() not in STREAM_READS:
        return None
    words = [decode(a).upper() for a in args]
    if "STREAMS" not in words:
        return None
    start = words.index("STREAMS") + 1
    return list(args[start : start + (len(args) - start) // 2])


STREAM_READS = ("XREAD", "XREADGROUP")


def _stream_keys_known(cluster: redis.RedisCluster) -> None:
    """redis-py finds the slot of a command whose keys move (XREAD, XREADGROUP: after STREAMS) by asking a
    node (COMMAND GETKEYS) at every call: on a cluster that doubled the commands of every stream read, the
    most frequent command a worker sends. The keys of a stream read are found here instead; every other
    command as redis-py does (its client and its pipelines share this parser)."""
    parser = cluster.commands_parser
    ask_a_node = cast(Callable[..., Any], parser.get_keys)  # untyped in redis-py

    def get_keys(redis_conn: Any, *args: Any) -> Any:
        keys = stream_read_keys(args)
        return keys if keys is not None else ask_a_node(redis_conn, *args)

    parser.get_keys = get_keys  # type: ignore[method-assign]


def node_url(url: str) -> str:
    """A plain `redis://` URL of the node a cluster URL names (Pub/Sub reaches the whole cluster from any
    node: the dashboard's Socket.IO message queue uses it); a standalone URL unchanged."""
    return url.replace("+cluster", "", 1) if is_cluster_url(url) else url


def process_id(kind: str) -> str:
    return f"{kind}-{socket.gethostname()}-{os.getpid()}"


def decode(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def stream_id(entry_id: object) -> tuple[int, int]:
    ms, _, seq = decode(entry_id).partition("-")
    return int(ms), int(seq or 0)


class Untrusted:
    """Anything in Redis may have been written by any client: what does not parse is skipped, counted, and
    logged once per value, never allowed to end a process."""

    def __init__(self, limit: int = 1000):
        self.seen: set[object] = set()
        self.limit = limit

    def skip(self, kind: str, value: object, reason: str) -> None:
        from ..metrics import BAD_REDIS_VALUES

        BAD_REDIS_VALUES.labels(kind).inc()
        if value not in self.seen and len(self.seen) < self.limit:
            self.seen.add(value)
            shown = repr(value)
            shown = shown if len(shown) <= 80 else f"{shown[:77]}..."
            log.warning("event=bad_redis_value kind=%s value=%s reason=%s", kind, shown, reason)


def camera_name(value: object) -> str:
    """A camera set member as a camera name; ProtocolError when it is not UTF-8 or not a valid name."""
    try:
        return check_camera(value.decode("utf-8") if isinstance(value, bytes) else str(value))
    except UnicodeDecodeError:
        raise ProtocolError(f"camera name {value!r} is not UTF-8") from None


def register_script(client: Client, source: str) -> Script:
    """A Lua script of the bus on this client. Each script's keys share one camera's (or feature's) hash tag,
    so on a cluster it runs on that key's shard."""
    # redis-py annotates register_script's `self` as Redis, but RedisCluster inherits the same method from its
    # ScriptCommands mixin and runs the scripts (tests/test_cluster.py): a stub mismatch, not a different call
    return client.register_script(source)  # type: ignore[misc]


class BusCore:
    def __init__(self, client: Client, jobs: Client | None = None):
        self.redis = client
        self.cluster = isinstance(client, redis.RedisCluster)
        self._poll_s = CLUSTER_IDLE_POLL_S  # a cluster's stream reads: the idle poll's interval now
        self._empty_poll_at: float | None = None  # when the last poll found nothing (monotonic)
        self._jobs = jobs
        self._add_frame = register_script(client, scripts.ADD_FRAME)
        self._publish = register_script(client, scripts.PUBLISH_RESULT)
        self._admit_webcam = register_script(client, scripts.ADMIT_WEBCAM)
        self._leave_webcam = register_script(client, scripts.LEAVE_WEBCAM)
        self._update_if_exists = register_script(client, scripts.UPDATE_IF_EXISTS)
        self._record_game = register_script(client, scripts.RECORD_GAME)
        self._renew_lease = register_script(client, scripts.RENEW_LEASE)
        self._release_lease = register_script(client, scripts.RELEASE_LEASE)
        self._hand_over = register_script(client, scripts.HAND_OVER)
        self._add_source = register_script(client, scripts.ADD_SOURCE)
        self.untrusted = Untrusted()

    @property
    def bells(self) -> bool:
        """Whether frames ring their reader, the doorbell (one Redis; on a cluster a script cannot reach a
        worker's keys, and workers poll their streams instead)."""
        return not self.cluster

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Self:
        return cls(connect(url, **kwargs))

    def ping(self) -> bool:
        return bool(self.redis.ping())

    def write_refusal(self) -> str:
        """Why Redis refuses writes now ("refusing writes: OOM ..."), or "" when it takes them: one small
        write that expires at once (`fervi status` asks, since no heartbeat gets through then)."""
        try:
            self.redis.set(f"{PREFIX}:probe", "1", px=100)
        except redis.ResponseError as err:
            if refuses_writes(err):
                return redis_trouble(err)
            raise
        return ""

    def server_time(self) -> float:
        """Redis's clock (TIME), in seconds: the one clock every host measures frame ages by (`fervi.clock`).
        On a cluster, one node's."""
        reply: Any = self.redis.time()
        if isinstance(reply, dict):  # RedisCluster asks a random node and keys its reply by node
            reply = next(iter(reply.values()))
        seconds, micros = reply
        return int(seconds) + int(micros) / 1e6

    def execute(self, pipe: redis.client.Pipeline, kind: str, what: object) -> list[Any]:
        """Run a pipeline of writes whose keys any client could have spoilt: every command runs, and one that
        Redis refuses (a key of another type, a field that is not a number) is skipped, not raised. A refusal
        of all writes (`REFUSING_WRITES`: OOM, MISCONF, READONLY) is raised, to be waited out."""
        replies: list[Any] = pipe.execute(raise_on_error=False)
        for reply in replies:
            if refuses_writes(reply):  # not a spoilt key: Redis refuses all writes for now
                raise reply
            if isinstance(reply, redis.ResponseError):
                self.untrusted.skip(kind, what, str(reply))
        return replies

    @property
    def jobs(self) -> redis.Redis:
        """The Redis of the offline stage's RQ queue and video records: FERVI_RQ_REDIS_URL where set, else
        this connection (RQ does not work on a Redis Cluster)."""
        jobs = self.redis if self._jobs is None else self._jobs
        if isinstance(jobs, redis.RedisCluster):
            raise RuntimeError(
                "video jobs need a standalone Redis: RQ does not support Redis Cluster; set FERVI_RQ_REDIS_URL"
            )
        return jobs

    def read_streams(
        self, streams: dict[KeyT, StreamIdT], count: int, block_ms: int | None, group: tuple[str, str] | None = None
    ) -> Any:
        """XREAD (or XREADGROUP with `group` = (group, consumer)) of several streams, as redis-py replies.
        On a cluster a multi-key read must stay in one slot and each camera has its own: one read per stream,
        pipelined (a round trip per node), polled up to `block_ms` while empty: after CLUSTER_IDLE_POLL_S,
        then twice as long each time up to CLUSTER_IDLE_POLL_MAX_S, from one call to the next (an idle
        reader's cost is at most 5 reads of each of its streams a second), and back to CLUSTER_IDLE_POLL_S
        as soon as anything comes."""
        if not self.cluster:
            if group:
                return self.redis.xreadgroup(group[0], group[1], streams, count=count, block=block_ms)
            return self.redis.xread(streams, count=count, block=block_ms)
        deadline = time.monotonic() + (block_ms or 0) / 1000
        while True:
            if block_ms and self._empty_poll_at is not None:  # idle: not sooner than the interval reached
                wait = min(self._empty_poll_at + self._poll_s, deadline) - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            pipe = self.redis.pipeline(transaction=False)
            for key, position in streams.items():
                if group:
                    pipe.xreadgroup(group[0], group[1], {key: position}, count=count)
                else:
                    pipe.xread({key: position}, count=count)
            reply = [r for part in pipe.execute() if part for r in _stream_items(part)]
            if reply:
                self._poll_s, self._empty_poll_at = CLUSTER_IDLE_POLL_S, None
                return reply
            self._empty_poll_at = time.monotonic()
            if self._empty_poll_at >= deadline:
                return reply
            self._poll_s = min(2 * self._poll_s, CLUSTER_IDLE_POLL_MAX_S)  # idle: ask less often, up to 5 a second

    def _read_after(
        self, key_of: Callable[[str], str], positions: dict[str, str], count: int, block_ms: int
    ) -> list[tuple[str, list[tuple[str, dict[Any, Any]]]]]:
        """XREAD of one stream per camera after its position: (camera, [(entry id, fields)]) per camera."""
        reply = self.read_streams({key_of(c): p for c, p in positions.items()}, count, block_ms)
        return [(camera_of(stream), [(decode(i), f) for i, f in items]) for stream, items in reply or []]

    def memory_info(self) -> dict[str, Any]:
        """The server's INFO memory section (used_memory, used_memory_rss, ... in bytes); on a cluster, the
        sums over its primaries."""
        return self.server_info("memory")

    def server_info(self, section: str | None = None) -> dict[str, Any]:
        """INFO (or one section of it); on a cluster, each number summed over the primaries (CPU seconds,
        commands processed, network bytes, memory: what the capacity bench reads)."""
        if not self.cluster:
            return sync(self.redis.info(section) if section else self.redis.info())
        per_node: dict[str, dict[str, Any]] = sync(
            self.redis.info(section, target_nodes=redis.RedisCluster.PRIMARIES)
            if section
            else self.redis.info(target_nodes=redis.RedisCluster.PRIMARIES)
        )
        totals: dict[str, Any] = {}
        for info in per_node.values():
            for key, value in info.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    totals[key] = totals.get(key, 0) + value
        return totals


def _stream_items(reply: Any) -> Iterable[Any]:
    """(stream, items) pairs of an XREAD reply: a list in RESP2, a dict in RESP3."""
    return reply.items() if isinstance(reply, dict) else reply
