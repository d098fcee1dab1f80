"""Cameras that come and go: browser cameras (one per connected browser that sends its camera) and one-off
cameras (an uploaded image)."""

from __future__ import annotations

import time

from ..protocol import check_camera
from .core import decode, sync
from .keys import (
    CAMERAS,
    CAMERAS_VERSION,
    ONE_OFF_CAMERAS,
    WEBCAM_OWNERS,
    WEBCAM_SIDS,
    WEBCAM_TITLES,
    WEBCAMS,
    WEBCAMS_LEAVING,
    WEBCAMS_SHARED,
)
from .streams import Streams


class Webcams(Streams):
    def add_one_off_camera(self, camera: str) -> None:
        """A camera for one request (an uploaded image): forgotten by its request, or by
        `sweep_one_off_cameras` if the process serving it died first."""
        self.redis.zadd(ONE_OFF_CAMERAS, {check_camera(camera): time.time()})
        self.ensure_group(camera)
        self.register_camera(camera)

    def sweep_one_off_cameras(self, max_age_s: float) -> list[str]:
        stale = [decode(c) for c in sync(self.redis.zrangebyscore(ONE_OFF_CAMERAS, "-inf", time.time() - max_age_s))]
        for camera in stale:
            self.forget_camera(camera)
        return stale

    # --- browser cameras ---------------------------------------------------------------------
    def admit_webcam(self, camera: str, address: str, most: int, most_per_address: int, client: str = "") -> int:
        """Count a browser camera's frame: 1 known, 2 newly admitted (registered as a camera), -1 refused as
        one too many, -2 refused as one too many from `address`. `client`: its Socket.IO id."""
        outcome = int(
            self._admit_webcam(
                keys=[WEBCAMS, WEBCAM_OWNERS, WEBCAMS_LEAVING, WEBCAM_SIDS],
                args=[camera, address, f"{time.time():.3f}", most, most_per_address, client],
            )
        )
        if outcome == 2:
            self.ensure_group(camera)
            self.register_camera(camera)
        return outcome

    def leave_webcam(self, camera: str) -> bool:
        """A browser camera's client left: it stops being a camera now, its keys go after a grace period
        (`sweep_webcams`), so frames the workers hold do not create them again."""
        left = bool(
            self._leave_webcam(
                keys=[WEBCAMS, WEBCAM_OWNERS, WEBCAMS_SHARED, WEBCAMS_LEAVING, WEBCAM_SIDS],
                args=[camera, f"{time.time():.3f}"],
            )
        )
        if self.redis.srem(CAMERAS, camera):
            self.redis.incr(CAMERAS_VERSION)  # the workers read the camera set again
        return left

    def sweep_webcams(self, idle_s: float, grace_s: float) -> tuple[list[str], list[str]]:
        """Browser cameras with no frame for `idle_s` leave; those that left `grace_s` ago are forgotten.
        Returns (left, forgotten)."""
        now = time.time()
        left = [
            c
            for c in map(decode, sync(self.redis.zrangebyscore(WEBCAMS, "-inf", now - idle_s)))
            if self.leave_webcam(c)
        ]
        forgotten = []
        for camera in map(decode, sync(self.redis.zrangebyscore(WEBCAMS_LEAVING, "-inf", now - grace_s))):
            if self.redis.zrem(WEBCAMS_LEAVING, camera):
                self.forget_camera(camera)
                self.redis.hdel(WEBCAM_TITLES, camera)
                forgotten.append(camera)
        return left, forgotten

    def webcams(self) -> dict[str, str]:
        """Live browser cameras and the address each came from."""
        return {decode(k): decode(v) for k, v in sync(self.redis.hgetall(WEBCAM_OWNERS)).items()}

    def webcam_clients(self) -> dict[str, str]:
        """Live browser cameras and the Socket.IO id of the client each belongs to."""
        return {decode(k): decode(v) for k, v in sync(self.redis.hgetall(WEBCAM_SIDS)).items()}

    def share_webcam(self, camera: str, shared: bool) -> bool:
        """Show a live browser camera on the shared wall (or stop); False when it is not live."""
        if self.redis.zscore(WEBCAMS, camera) is None:
            return False
        (self.redis.sadd if shared else self.redis.srem)(WEBCAMS_SHARED, camera)
        return True

    def set_webcam_title(self, camera: str, title: str) -> None:
        """The name a browser camera's user shows it under (checked plain text: the dashboard's to clean)."""
        self.redis.hset(WEBCAM_TITLES, camera, title)

    def webcam_titles(self) -> dict[str, str]:
        return {decode(k): decode(v) for k, v in sync(self.redis.hgetall(WEBCAM_TITLES)).items()}

    def shared_webcams(self) -> set[str]:
        return {decode(c) for c in sync(self.redis.smembers(WEBCAMS_SHARED))}

    def is_shared_webcam(self, camera: str) -> bool:
        """Whether a browser camera is live and its user shares it (what others may see of it)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zscore(WEBCAMS, camera)
        pipe.sismember(WEBCAMS_SHARED, camera)
        live, shared = pipe.execute()
        return live is not None and bool(shared)
