"""Camera sources: the cameras the ingest supervisor runs (added by `fervi cameras add`, `fervi up` or the
dashboard's Cameras page), each camera's ingest state, and the lease that makes one supervisor run it."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import redis

from ..protocol import CameraSource, ProtocolError, check_camera
from .core import REDIS_DOWN, BusCore, RedisError, decode, redis_trouble, sync
from .keys import REMOVED_SOURCES, SOURCE_STATE_TTL_S, SOURCES, source_lease_key, source_state_key

log = logging.getLogger("fervi.bus")


class RegistryFull(RuntimeError):
    """No room for another camera (FERVI_CAMERAS_MAX)."""


class Sources(BusCore):
    if TYPE_CHECKING:  # `Processes.processes`: `Bus` has both mixins

        def processes(self) -> dict[str, dict[str, str]]: ...

    def add_source(self, source: CameraSource, replace: bool = False, most: int = 1 << 30) -> bool:
        """Register a camera for the supervisor to run; False when the name is taken (and `replace` is off).
        Raises `RegistryFull` when `most` cameras are registered already."""
        if not source.added_at:
            source.added_at = time.time()
        outcome = int(self._add_source(keys=[SOURCES], args=[source.camera, source.to_json(), most, int(replace)]))
        if outcome < 0:
            raise RegistryFull(f"{most} cameras are registered, the most allowed (FERVI_CAMERAS_MAX): remove one first")
        if outcome == 1:  # registered again: no longer removed
            pipe = self.redis.pipeline(transaction=False)
            pipe.hdel(REMOVED_SOURCES, source.camera)
            self.execute(pipe, "removed_source", source.camera)
        return outcome == 1

    def streams_elsewhere(self, camera: str) -> bool:
        """A camera some `fervi ingest` runs without the registry (its heartbeat names it): another camera of
        that name would mix two sources into one stream."""
        if self.redis.hexists(SOURCES, camera):
            return False
        return any(info.get("kind") == "ingest" and info.get("camera") == camera for info in self.processes().values())

    def supervisor_running(self) -> bool:
        """Whether some `fervi cameras supervise` (or `fervi up`) is alive to run the registered cameras."""
        return any(info.get("kind") == "cameras" for info in self.processes().values())

    def remove_source(self, camera: str) -> bool:
        """Stop running a camera (its supervisor stops the ingest); its charts and tracks stay. When it was
        removed is kept until it is added again (`removed_sources`): the wall and the charts end it then, not
        once its frames have stopped coming."""
        removed = bool(self.redis.hdel(SOURCES, check_camera(camera)))
        if removed:  # a `fervi:removed` some client spoilt loses the note, nothing else
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(source_state_key(camera))
            pipe.hset(REMOVED_SOURCES, camera, repr(self.server_time()))
            self.execute(pipe, "removed_source", camera)
        return removed

    def removed_sources(self) -> dict[str, float]:
        """Camera -> when it was removed from the registry (Redis's clock), for those not added again since; an
        entry that does not parse (some client wrote it) is skipped, and so is a key that is not a hash."""
        out: dict[str, float] = {}
        try:
            entries = sync(self.redis.hgetall(REMOVED_SOURCES))
        except redis.ResponseError as err:  # not a hash: some client wrote it
            self.untrusted.skip("removed_source", REMOVED_SOURCES, str(err))
            return out
        for name, raw in entries.items():
            try:
                out[decode(name)] = float(raw)
            except ValueError:
                self.untrusted.skip("removed_source", name, f"not a time: {raw!r:.40}")
        return out

    def sources(self) -> dict[str, CameraSource]:
        """The registered cameras; an entry that does not parse (some client wrote it) is skipped and counted."""
        out = {}
        for name, raw in sync(self.redis.hgetall(SOURCES)).items():
            try:
                source = CameraSource.from_json(raw)
                if source.camera != decode(name):
                    raise ProtocolError(f"registered as {decode(name)!r} but names {source.camera!r}")
            except ProtocolError as err:
                self.untrusted.skip("camera_source", name, str(err))
                continue
            out[source.camera] = source
        return dict(sorted(out.items()))

    def set_source_state(
        self, camera: str, state: str, reason: str = "", now: float | None = None, **info: object
    ) -> None:
        """A camera's ingest says how it goes (`fervi.protocol.SOURCE_STATES`) at `now` (its clock, corrected
        to Redis's where it is off: `fervi.clock`); a Redis outage loses the news."""
        fields = {
            "state": state,
            "reason": reason[:500],
            "updated_at": f"{time.time() if now is None else now:.3f}",
            **{k: str(v) for k, v in info.items()},
        }
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(source_state_key(camera), mapping=fields)
            pipe.expire(source_state_key(camera), SOURCE_STATE_TTL_S)
            pipe.execute()
        except REDIS_DOWN as err:  # away or refusing writes: this news is lost, the next one goes
            log.debug("event=source_state_lost camera=%s reason=%r", camera, redis_trouble(err))
        except RedisError as err:  # the key spoilt by some client
            self.untrusted.skip("source_state", camera, str(err))

    def clear_source_state(self, camera: str) -> None:
        self.redis.delete(source_state_key(camera))

    def source_states(self, cameras: Iterable[str]) -> dict[str, dict[str, str]]:
        """Each camera's ingest state as written (cameras with none are left out)."""
        cameras = list(cameras)
        pipe = self.redis.pipeline(transaction=False)
        for camera in cameras:
            pipe.hgetall(source_state_key(camera))
        states = {}
        for camera, fields in zip(cameras, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(fields, dict) and fields:
                states[camera] = {decode(k): decode(v) for k, v in fields.items()}
        return states

    def hold_source_lease(self, camera: str, owner: str, ttl_s: float) -> bool:
        """Take or renew the right to run a camera's ingest; False while another supervisor holds it."""
        key, ttl_ms = source_lease_key(camera), int(ttl_s * 1000)
        if self.redis.set(key, owner, nx=True, px=ttl_ms):
            return True
        return bool(self._renew_lease(keys=[key], args=[owner, ttl_ms]))

    def release_source_lease(self, camera: str, owner: str) -> None:
        try:
            self._release_lease(keys=[source_lease_key(camera)], args=[owner])
        except REDIS_DOWN:
            pass  # it runs out by itself
