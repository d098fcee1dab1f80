"""Cameras and their streams: frames in (ingest), results out (workers), dead letters and counters.

Delivery is at least once: workers read with XREADGROUP, publish, then ack; results are written once per
(camera, seq) by a bitmap checked in the same script, so a frame processed twice still yields one result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import redis
from redis.typing import KeyT, StreamIdT

from ..protocol import DeadLetter, Frame, ProtocolError, Result, check_camera
from .core import BusCore, Entry, camera_name, decode, entry_fields, refuses_writes, stream_id, sync
from .keys import (
    BELLS,
    CAMERA_KEY_TYPES,
    CAMERAS,
    CAMERAS_VERSION,
    DEAD_LETTER_MAXLEN,
    LATEST_FRAME_TTL_S,
    ONE_OFF_CAMERAS,
    PREFIX,
    SEEN_BLOCK,
    SEEN_TTL_S,
    WORKER_GROUP,
    bell_key,
    bell_keys,
    camera_of,
    dead_letter_key,
    frames_key,
    latest_frame_key,
    reader_key,
    results_key,
    rung_key,
    seen_key,
    seq_key,
    stats_key,
)

log = logging.getLogger("fervi.bus")


class Streams(BusCore):
    # --- cameras -----------------------------------------------------------------------------
    def register_camera(self, camera: str) -> None:
        if self.redis.sadd(CAMERAS, check_camera(camera)):
            self.redis.incr(CAMERAS_VERSION)  # after the change: a reader that saw the old version reads again

    def camera_names_since(self, version: str | None, force: bool = False) -> tuple[str, list[str]] | None:
        """(the camera set's version, its names) when the version is not `version` (or `force`), else None:
        a worker reads the whole set only when it changed."""
        current = decode(sync(self.redis.get(CAMERAS_VERSION)) or b"0")
        if current == version and not force:
            return None
        return current, self.camera_names()

    def cameras(self) -> list[str]:
        """Valid cameras of the camera set: a member that is not a valid name, or whose streams are keys of
        another type (any client may `SET fervi:{x}:frames`), is skipped (see `_Untrusted`)."""
        return self.valid_cameras(self.camera_names())

    def camera_names(self) -> list[str]:
        """The camera set's valid names, sorted (one command; their keys' types are not checked)."""
        names = []
        for member in sync(self.redis.smembers(CAMERAS)):
            try:
                names.append(camera_name(member))
            except ProtocolError as err:
                self.untrusted.skip("camera_name", member, str(err))
        return sorted(names)

    def valid_cameras(self, names: list[str]) -> list[str]:
        """Those of `names` whose keys are of FERVI's types (checked in one round trip: one TYPE per key, so a
        worker checks the cameras it reads, not all)."""
        pipe = self.redis.pipeline(transaction=False)
        for camera in names:
            for key_of, _ in CAMERA_KEY_TYPES:
                pipe.type(key_of(camera))
        types = [decode(t) for t in pipe.execute()] if names else []
        valid, width = [], len(CAMERA_KEY_TYPES)
        for i, camera in enumerate(names):
            wrong = [
                (key_of(camera), t)
                for (key_of, kind), t in zip(CAMERA_KEY_TYPES, types[width * i : width * (i + 1)], strict=True)
                if t not in (kind, "none")
            ]
            if wrong:
                self.untrusted.skip("camera_keys", camera, ", ".join(f"{k} is a {t}" for k, t in wrong))
            else:
                valid.append(camera)
        return valid

    def ensure_group(self, camera: str) -> None:
        try:
            self.redis.xgroup_create(frames_key(camera), WORKER_GROUP, id="0", mkstream=True)
        except redis.ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise

    # --- ingest ------------------------------------------------------------------------------
    def add_frame(self, frame: Frame, maxlen: int = 0) -> tuple[int, str]:
        """XADD a frame; Redis assigns its seq. `maxlen` > 0 trims the stream (live sources)."""
        flat: list[Any] = [maxlen, BELLS if self.bells else "", frame.camera]
        for key, value in frame.to_fields().items():
            flat += [key, value]
        seq, entry_id = self._add_frame(
            keys=[frames_key(frame.camera), seq_key(frame.camera), results_key(frame.camera), reader_key(frame.camera)],
            args=flat,
        )
        return int(seq), decode(entry_id)

    def last_seq(self, camera: str) -> int:
        """The last seq ingest assigned to a camera's frames (-1 before the first, or when not a number)."""
        try:
            value = sync(self.redis.get(seq_key(camera)))
            return int(value) if value is not None else -1
        except (ValueError, redis.ResponseError) as err:  # a key of another type, or not a number
            self.untrusted.skip("seq", camera, str(err))
            return -1

    def frame_in_flight(self, camera: str, seq: int, results_read_to: str) -> bool:
        """Whether frame `seq` may still bring a result that a reader of the results stream, having read up
        to entry `results_read_to`, has not seen. A frame leaves its stream in the same script that writes its
        result (or when a live stream is trimmed), so: yes while a frame at or before `seq` is still in the
        frames stream (with a worker, or waiting to be reclaimed), and yes while results written before now
        are unread (the one for `seq` may be among them)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.xrange(frames_key(camera), count=1)
        pipe.xrevrange(results_key(camera), count=1)
        oldest_frame, newest_result = pipe.execute()
        if oldest_frame:
            fields = oldest_frame[0][1]
            if isinstance(fields, list):  # a cluster's transaction returns entries unparsed: [field, value, ...]
                fields = dict(zip(fields[::2], fields[1::2], strict=True))
            try:
                if int(fields.get(b"seq", fields.get("seq"))) <= seq:
                    return True
            except (TypeError, ValueError):
                pass
        return bool(newest_result) and stream_id(newest_result[0][0]) > stream_id(results_read_to)

    def results_kept(self, camera: str) -> int:
        return int(sync(self.redis.xlen(results_key(camera))))

    def backlog(self, camera: str) -> int:
        """Frames added but not yet done (workers delete frames once their result is written)."""
        return int(sync(self.redis.xlen(frames_key(camera))))

    # --- workers -----------------------------------------------------------------------------
    def read_frames(self, consumer: str, cameras: list[str], count: int, block_ms: int | None) -> list[Entry]:
        """New entries of the cameras' frame streams for `consumer` (XREADGROUP ... >), up to `count` per
        camera, waiting up to `block_ms` for one (None: not at all)."""
        if not cameras:
            time.sleep((block_ms or 0) / 1000)
            return []
        streams: dict[KeyT, StreamIdT] = {frames_key(c): ">" for c in cameras}
        return list(self._entries(self.read_streams(streams, count, block_ms, (WORKER_GROUP, consumer))))

    # --- the doorbell (`bells`): a worker waits on one key for the cameras it owns, not on every stream ---
    def ring_me(self, worker: str, cameras: list[str]) -> None:
        """`worker` reads these cameras from now on: their frames ring its bell."""
        if cameras and self.bells:
            pipe = self.redis.pipeline(transaction=False)
            for camera in cameras:
                pipe.set(reader_key(camera), worker)
            self.execute(pipe, "reader", worker)

    def hand_bells_over(self, worker: str, new_readers: dict[str, str]) -> None:
        """`worker` gives these cameras up: each one's frames ring its new reader from now on, unless some
        other worker became its reader meanwhile."""
        if new_readers and self.bells:
            pipe = self.redis.pipeline(transaction=False)
            for camera, new in new_readers.items():
                self._hand_over(keys=[reader_key(camera)], args=[worker, new], client=pipe)
            self.execute(pipe, "reader", worker)

    def wait_for_bell(self, worker: str, wait_ms: int, most: int) -> list[str] | None:
        """The cameras that rang `worker` (up to `most`), after waiting up to `wait_ms` for the first (0: not
        at all), in one round trip. None when its bell keys were spoilt by some client: they are deleted (and
        the caller reads all its streams)."""
        pipe = self.redis.pipeline(transaction=False)
        if wait_ms > 0:
            pipe.blpop([bell_key(worker)], timeout=wait_ms / 1000)
        pipe.lpop(bell_key(worker), most)
        replies = pipe.execute(raise_on_error=False)
        errors = [r for r in replies if isinstance(r, redis.ResponseError)]
        if errors:
            if refuses_writes(errors[0]):
                raise errors[0]
            self.untrusted.skip("bell", worker, str(errors[0]))
            self.redis.delete(*bell_keys(worker))
            return None
        first = [replies[0][1]] if wait_ms > 0 and replies[0] else []
        return sorted({decode(c) for c in [*first, *(replies[-1] or [])]})

    def read_rung(self, consumer: str, cameras: list[str], count: int, answered: list[str]) -> list[Entry]:
        """`read_frames` without waiting, after answering the bells of `answered` in the same round trip (a
        frame that comes after the answer rings again; one before it is in this read)."""
        pipe = self.redis.pipeline(transaction=False)
        if answered:
            pipe.srem(rung_key(consumer), *answered)
        if cameras:
            pipe.xreadgroup(WORKER_GROUP, consumer, {frames_key(c): ">" for c in cameras}, count=count)
        replies = pipe.execute(raise_on_error=False)
        if answered and isinstance(replies[0], redis.ResponseError):  # a rung set some client spoilt
            self.untrusted.skip("bell", consumer, str(replies[0]))
            self.redis.delete(rung_key(consumer))
        if not cameras:
            return []
        if isinstance(replies[-1], Exception):
            raise replies[-1]
        return list(self._entries(replies[-1]))

    def reclaim(self, consumer: str, camera: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Take over entries another consumer read but did not ack within `min_idle_ms` (XAUTOCLAIM)."""
        reply = sync(self.redis.xautoclaim(frames_key(camera), WORKER_GROUP, consumer, min_idle_ms, "0-0", count=count))
        return self._claimed(camera, reply)

    def reclaim_many(self, consumer: str, cameras: list[str], min_idle_ms: int, count: int) -> list[Entry]:
        """`reclaim` of several cameras, up to `count` entries each, in one round trip on one Redis (one call
        each on a cluster)."""
        if self.cluster:
            return [e for camera in cameras for e in self.reclaim(consumer, camera, min_idle_ms, count)]
        pipe = self.redis.pipeline(transaction=False)
        for camera in cameras:
            pipe.xautoclaim(frames_key(camera), WORKER_GROUP, consumer, min_idle_ms, "0-0", count=count)
        replies = pipe.execute()
        return [e for camera, reply in zip(cameras, replies, strict=True) for e in self._claimed(camera, reply)]

    def _claimed(self, camera: str, reply: Any) -> list[Entry]:
        claimed = reply[1]
        # Entries trimmed from a live stream while pending: Redis 7 drops them from the PEL and lists them
        # in reply[2]; Redis 6.2 returns them with no fields and keeps them pending, so ack them here.
        gone = [i for i, f in claimed if not f]
        if gone:
            self.redis.xack(frames_key(camera), WORKER_GROUP, *gone)
        if gone or (len(reply) > 2 and reply[2]):
            log.info(
                "event=reclaimed_trimmed camera=%s count=%d",
                camera,
                len(gone) + len(reply[2] if len(reply) > 2 else []),
            )
        return [Entry(camera, decode(i), f) for i, f in claimed if f]

    @staticmethod
    def _entries(reply: Any) -> Iterator[Entry]:
        for stream, items in reply or []:
            camera = camera_of(stream)
            for entry_id, fields in items:
                yield Entry(camera, decode(entry_id), fields)

    def publish_result(self, result: Result, entry_id: str, maxlen: int) -> bool:
        """Write the result once per (camera, seq), ack and delete the frame, atomically. True if new; False
        for a repeat, or when the camera was forgotten meanwhile (its result is dropped)."""
        published: int = self._publish(**self._publish_call(result, entry_id, maxlen))
        return published == 1

    def publish_results(
        self, results: list[tuple[Result, str]], maxlen: int, previews: Sequence[tuple[str, int, bytes]] = ()
    ) -> list[bool]:
        """`publish_result` for a batch of (result, frame entry id), and `set_latest_frame` for `previews`
        ((camera, seq, jpeg)): one round trip on a standalone Redis (each result still atomic on its own); one
        call each on a cluster, whose pipelines take no scripts."""
        if self.cluster or len(results) + len(previews) < 2:
            published = [self.publish_result(result, entry_id, maxlen) for result, entry_id in results]
            for camera, seq, jpeg in previews:
                self.set_latest_frame(camera, seq, jpeg)
            return published
        pipe = self.redis.pipeline(transaction=False)
        for result, entry_id in results:
            self._publish(**self._publish_call(result, entry_id, maxlen), client=pipe)
        for camera, seq, jpeg in previews:
            self._latest_frame(pipe, camera, seq, jpeg)
        return [reply == 1 for reply in pipe.execute()[: len(results)]]

    @staticmethod
    def _publish_call(result: Result, entry_id: str, maxlen: int) -> dict[str, Any]:
        flat: list[Any] = [result.seq % SEEN_BLOCK, SEEN_TTL_S, maxlen, WORKER_GROUP, entry_id]
        for key, value in result.to_fields().items():
            flat += [key, value]
        keys = [results_key(result.camera), seen_key(result.camera, result.seq), frames_key(result.camera)]
        return {"keys": keys, "args": flat}

    def count(self, camera: str, counter: str, n: int = 1) -> None:
        """Add to one of a camera's counters (`fervi status`, dashboard metrics); a counter some client made
        into something else than a number is skipped."""
        try:
            self.redis.hincrby(stats_key(camera), counter, n)
        except redis.ResponseError as err:
            if refuses_writes(err):
                raise  # waited out by the caller's loop, not a spoilt key
            self.untrusted.skip("stats", (camera, counter), str(err))

    def set_latest_frame(self, camera: str, seq: int, jpeg: bytes) -> None:
        """The newest analysed frame of a camera, for live displays (kept briefly)."""
        pipe = self.redis.pipeline(transaction=False)
        self._latest_frame(pipe, camera, seq, jpeg)
        pipe.execute()

    @staticmethod
    def _latest_frame(pipe: redis.client.Pipeline, camera: str, seq: int, jpeg: bytes) -> None:
        key = latest_frame_key(camera)
        pipe.hset(key, mapping={"seq": seq, "jpeg": jpeg, "ts": f"{time.time():.3f}"})
        pipe.expire(key, LATEST_FRAME_TTL_S)

    def latest_frame(self, camera: str) -> tuple[int, bytes] | None:
        try:
            values = sync(self.redis.hmget(latest_frame_key(camera), ["seq", "jpeg"]))
            return (int(values[0]), values[1]) if values[0] is not None and values[1] else None
        except (redis.ResponseError, ValueError) as err:  # spoilt by some client: no preview
            self.untrusted.skip("latest_frame", camera, str(err))
            return None

    def forget_camera(self, camera: str) -> None:
        """Remove a camera and its keys (one-off cameras such as an uploaded image, browsers that left)."""
        self.redis.zrem(ONE_OFF_CAMERAS, camera)
        if self.redis.srem(CAMERAS, camera):
            self.redis.incr(CAMERAS_VERSION)
        for key in self.redis.scan_iter(match=f"{PREFIX}:{{{camera}}}:*", count=500):
            self.redis.delete(key)

    def dead_letter(self, letter: DeadLetter, ack: bool = True) -> None:
        """Keep a bad entry's summary and count it; `ack=False` when a gap marker will ack the frame."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(
            dead_letter_key(letter.camera),
            entry_fields(letter.to_fields()),
            maxlen=DEAD_LETTER_MAXLEN,
            approximate=True,
        )
        pipe.hincrby(stats_key(letter.camera), "dead_lettered", 1)
        if ack:
            pipe.xack(frames_key(letter.camera), WORKER_GROUP, letter.entry_id)
            pipe.xdel(frames_key(letter.camera), letter.entry_id)
        self.execute(pipe, "dead_letter", letter.camera)

    def stats(self, camera: str) -> dict[str, int]:
        """A camera's counters; a field that is not a number (or a key of another type) is skipped."""
        try:
            raw = sync(self.redis.hgetall(stats_key(camera)))
        except redis.ResponseError as err:
            self.untrusted.skip("stats", camera, str(err))
            return {}
        out = {}
        for key, value in raw.items():
            try:
                out[decode(key)] = int(value)
            except ValueError:
                self.untrusted.skip("stats", (camera, key), f"{decode(key)}={value!r} is not a number")
        return out

    # --- reading results ---------------------------------------------------------------------
    def results(self, camera: str, start: str = "-", count: int | None = None) -> list[tuple[str, Result]]:
        return [
            (decode(i), Result.from_fields(f))
            for i, f in sync(self.redis.xrange(results_key(camera), start, "+", count))
        ]

    def pending(self, camera: str) -> int:
        """Frames a worker has read and not yet acked."""
        return int(sync(self.redis.xpending(frames_key(camera), WORKER_GROUP))["pending"])

    def read_results(
        self, positions: dict[str, str], count: int, block_ms: int
    ) -> list[tuple[str, list[tuple[str, dict[Any, Any]]]]]:
        """The tracker's read: per camera, results after its position, as (camera, [(entry id, fields)])."""
        return self._read_after(results_key, positions, count, block_ms)
