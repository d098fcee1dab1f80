"""`fervi tracker`: results in seq order -> stable face tracks, smoothed emotions, statistics.

Each tracker process owns the cameras whose stable hash falls in its shard (`--shard I/N`), so cameras
scale out over several trackers. It reads a camera's results stream from where it left off (the position
is kept in Redis), restores seq order with a small reorder window, and per frame publishes a tracks entry
and updates the statistics that the dashboard and reports read (`fervi.bus.tracks`).
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass, field

from fervi.bus import Bus, RedisRefused, connect, process_id
from fervi.metrics import LATE, TRACK_SECONDS, TRACKED
from fervi.protocol import ProtocolError, Result, TrackEntry, metric_camera
from fervi.service import Heartbeat, Shutdown, run_redis_loop, serve
from fervi.settings import Settings
from fervi.tracking import FaceTracker, ReorderBuffer

log = logging.getLogger(__name__)

FLUSH_AFTER_S = 1.0  # a camera quiet this long: release what the reorder buffer holds
TRACK_RECORD_EVERY_S = 2.0  # an open track's record (end, frames, seconds) is brought up to date this often
STOPPED_AFTER_S = 10.0  # a camera quiet this long: end its tracks


def owns(camera: str, shard: int, shards: int) -> bool:
    return zlib.crc32(camera.encode()) % shards == shard


@dataclass
class CameraState:
    tracker: FaceTracker
    buffer: ReorderBuffer[Result]
    position: str
    last_result: float = field(default_factory=time.monotonic)
    stopped: bool = False
    recorded_at: float = 0.0  # when the open tracks' records were last brought up to date


class TrackerProcess:
    def __init__(self, settings: Settings, redis_url: str, shard: int = 0, shards: int = 1):
        self.settings = settings
        self.shard, self.shards = shard, shards
        self.name = process_id("tracker")
        self.bus = Bus(connect(redis_url, socket_timeout=max(10, settings.block_ms / 1000 + 5)))
        self.shutdown = Shutdown(self.name)
        self.cameras: dict[str, CameraState] = {}
        self.frames = 0
        self.redis_ok = False
        self._refreshed_at = 0.0
        self.heartbeat = Heartbeat(self.bus, self.name, "tracker", settings.heartbeat_ttl_s)

    def _state(self, camera: str) -> CameraState:
        tracker = FaceTracker.from_settings(self.settings, next_id=lambda: self.bus.next_track_id(camera))
        state = CameraState(
            tracker,
            ReorderBuffer(
                self.settings.reorder_window,
                self.settings.reorder_wait_s,
                last_seq=lambda: self.bus.last_seq(camera),
                max_hold_s=2 * self.settings.claim_timeout_s + 5,
            ),
            self.bus.tracker_position(camera),
        )
        # a missing seq is not given up on while its frame is with the workers or its result is unread
        state.buffer.in_flight = lambda seq: self.bus.frame_in_flight(camera, seq, state.position)
        return state

    def _refresh(self, now: float) -> None:
        if now - self._refreshed_at < 2.0:
            return
        self._refreshed_at = now
        cameras = self.bus.cameras()
        for camera in set(self.cameras) - set(cameras):  # forgotten (a browser camera whose client left)
            del self.cameras[camera]
            log.info("event=camera_left tracker=%s camera=%s", self.name, camera)
        for camera in cameras:
            if camera not in self.cameras and owns(camera, self.shard, self.shards):
                self.cameras[camera] = self._state(camera)
                log.info(
                    "event=camera_tracked tracker=%s camera=%s from=%s",
                    self.name,
                    camera,
                    self.cameras[camera].position,
                )
        self.heartbeat.beat(now, shard=f"{self.shard}/{self.shards}", cameras=len(self.cameras), frames=self.frames)

    def _publish(self, camera: str, state: CameraState, released: list[tuple[int, Result]]) -> None:
        """Track the results the reorder buffer released, in seq order, and publish their tracks entries."""
        tracked = []
        for seq, result in released:
            if result.gap:  # a skipped or dead frame: its seq is passed, nothing is tracked
                continue
            started = time.perf_counter()
            frame = state.tracker.update(seq, result.captured_at, result.faces)
            TRACK_SECONDS.observe(time.perf_counter() - started)
            tracked.append(
                (
                    TrackEntry(
                        camera,
                        seq,
                        result.index,
                        result.captured_at,
                        time.time(),
                        result.width,
                        result.height,
                        frame.faces,
                    ),
                    frame,
                )
            )
            TRACKED.labels(metric_camera(camera)).inc()
            self.frames += 1
        if tracked:
            now = time.monotonic()
            still_open = []
            if now - state.recorded_at >= TRACK_RECORD_EVERY_S:  # charts list faces still on camera as they go
                new_ids = {t.id for _, frame in tracked for t in frame.started}
                still_open = [t for t in state.tracker.tracks if t.confirmed and t.id not in new_ids]
                state.recorded_at = now
            self.bus.publish_tracks(camera, tracked, self.settings.results_maxlen, still_open)

    def step(self) -> None:
        now = time.time()
        self._refresh(now)
        live = self.cameras
        if not live:
            self.shutdown.wait(self.settings.block_ms / 1000)
            return
        # Block no longer than the earliest held result has left to wait for a missing seq, so it is
        # released on time even when no further result arrives.
        waits = [w for w in (s.buffer.wait_s() for s in live.values()) if w is not None]
        block_ms = min([self.settings.block_ms] + [int(w * 1000) + 1 for w in waits])
        for camera, items in self.bus.read_results({c: s.position for c, s in live.items()}, 256, block_ms):
            state = live[camera]
            released = []
            late_before, bad_before, gaps_before = state.buffer.late, state.buffer.bad, state.buffer.gaps
            for entry_id, fields in items:
                state.position = entry_id
                try:
                    result = Result.from_fields(fields)
                except ProtocolError as err:
                    log.warning("event=bad_result camera=%s entry=%s reason=%r", camera, state.position, str(err))
                    continue
                released += state.buffer.push(result.seq, result)
            state.last_result = time.monotonic()
            state.stopped = False
            self._publish(camera, state, released)
            self._report_buffer(camera, state.buffer, gaps_before, late_before, bad_before)
            self.bus.set_tracker_position(camera, state.position)
        self._idle(time.monotonic())

    def _report_buffer(
        self, camera: str, buffer: ReorderBuffer[Result], gaps_before: int, late_before: int, bad_before: int
    ) -> None:
        """What the reorder buffer gave up on, got late or refused while it took one read's results."""
        for event, count in (("seqs_given_up", buffer.gaps - gaps_before), ("late_results", buffer.late - late_before)):
            if count > 0:
                log.info("event=%s camera=%s count=%d next=%s", event, camera, count, buffer.next_seq)
        if buffer.bad > bad_before:
            self.bus.untrusted.skip(
                "result_seq",
                camera,
                f"{buffer.bad - bad_before} result(s) with a seq beyond the last one ingest assigned",
            )
        if buffer.late > late_before:
            self.bus.count(camera, "late", buffer.late - late_before)
            LATE.labels(metric_camera(camera)).inc(buffer.late - late_before)

    def _idle(self, now: float) -> None:
        for camera, state in self.cameras.items():
            quiet = now - state.last_result
            if state.buffer.pending:
                released = state.buffer.flush() if quiet > FLUSH_AFTER_S else state.buffer.due()
                if released:
                    self._publish(camera, state, released)
            if quiet > STOPPED_AFTER_S and not state.stopped:
                ended = state.tracker.finish()
                self.bus.end_tracks(camera, ended)
                state.stopped = True
                if ended:
                    log.info("event=camera_quiet camera=%s tracks_ended=%d", camera, len(ended))

    def health(self) -> dict:
        return {
            "ok": self.redis_ok and not self.shutdown.requested,
            "tracker": self.name,
            "cameras": sorted(self.cameras),
            "frames": self.frames,
        }

    def _step(self) -> None:
        try:
            self.step()
        except RedisRefused as err:
            if "WRONGTYPE" not in str(err):
                raise
            # a camera's key replaced by another type: the camera refresh now skips that camera
            log.warning("event=cameras_refreshed tracker=%s reason=%r", self.name, str(err)[:120])
            self._refreshed_at = 0.0
            return
        self.redis_ok = True

    def _redis_down(self, _err: Exception) -> None:
        self.redis_ok = False

    def run(self) -> int:
        self.shutdown.install()
        log.info("event=tracker_started tracker=%s shard=%d/%d", self.name, self.shard, self.shards)
        run_redis_loop(self._step, self.shutdown, self._redis_down)
        self.heartbeat.forget()
        log.info("event=tracker_stopped tracker=%s frames=%d", self.name, self.frames)
        return 0


def run_tracker(settings: Settings, redis_url: str, shard: int, shards: int, metrics_port: int | None = None) -> int:
    return serve(TrackerProcess(settings, redis_url, shard, shards), metrics_port, settings)
