"""`fervi tracker`: results in seq order -> stable face tracks, smoothed emotions, statistics.

Each tracker process owns the cameras whose stable hash falls in its shard (`--shard I/N`), so cameras
scale out over several trackers. It reads a camera's results stream from where it left off, restores seq
order with a small reorder window, and per frame publishes a tracks entry and updates the statistics that
the dashboard and reports read (`fervi.bus.tracks`).

Output, read position and a snapshot of the camera's tracking state (open tracks, the next seq due) are
committed in one transaction per batch, so a tracker killed at any moment (or whose write Redis refused)
goes on from its last commit exactly as if it had not stopped: results held in the reorder buffer are read
again, those already tracked are not tracked twice, and open tracks keep their ids.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from dataclasses import dataclass, field

from fervi.bus import Bus, RedisRefused, connect, process_id, redis_trouble
from fervi.bus.tracks import TrackerCommit
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


Held = tuple[str, Result]  # what the reorder buffer holds: a result and its entry id in the results stream
SNAPSHOT_VERSION = 1  # of the tracking state committed with each batch (`CameraState.snapshot`)


@dataclass
class CameraState:
    tracker: FaceTracker
    buffer: ReorderBuffer[Held]
    position: str  # the results stream is read up to this entry
    # a previous tracker read the results up to this entry: a seq it passed is not tracked (nor counted) again
    replay_to: str = "0-0"
    last_result: float = field(default_factory=time.monotonic)
    stopped: bool = False
    recorded_at: float = 0.0  # when the open tracks' records were last brought up to date

    def commit(self, late: int = 0) -> TrackerCommit:
        """What goes with this camera's next write: where a restart reads again from (before the oldest
        result the reorder buffer holds, so it is read again; else after the last one read) and the state."""
        held = [entry_id for (entry_id, _), _ in self.buffer.pending.values()]
        position = Bus.entry_before(min(held, key=Bus.entry_order)) if held else self.position
        read_to = max(self.position, self.replay_to, key=Bus.entry_order)
        snapshot = {"v": SNAPSHOT_VERSION, "read_to": read_to, "next_seq": self.buffer.next_seq}
        return TrackerCommit(position, json.dumps({**snapshot, **self.tracker.state()}), late)

    def restore(self, snapshot: str) -> None:
        """Go on from a committed snapshot; ValueError (nothing changed) for one this version cannot read."""
        try:
            state = json.loads(snapshot)
            if state.get("v") != SNAPSHOT_VERSION:
                raise ValueError(f"schema version {state.get('v')!r}, not {SNAPSHOT_VERSION}")
            next_seq = None if state["next_seq"] is None else int(state["next_seq"])
            read_to = str(state["read_to"])
            Bus.entry_order(read_to)
            self.tracker.restore(state)
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(str(err) or type(err).__name__) from None
        self.buffer.next_seq, self.replay_to = next_seq, read_to


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
        self.redis_trouble = "not reached yet"
        self._refreshed_at = 0.0
        self.heartbeat = Heartbeat(self.bus, self.name, "tracker", settings.heartbeat_ttl_s)

    def _state(self, camera: str) -> CameraState:
        """A camera's tracking as its last commit left it (fresh for a new camera)."""
        tracker = FaceTracker.from_settings(self.settings, next_id=lambda: self.bus.next_track_id(camera))
        buffer: ReorderBuffer[Held] = ReorderBuffer(
            self.settings.reorder_window,
            self.settings.reorder_wait_s,
            last_seq=lambda: self.bus.last_seq(camera),
            max_hold_s=2 * self.settings.claim_timeout_s + 5,
        )
        state = CameraState(tracker, buffer, self.bus.tracker_position(camera))
        # a missing seq is not given up on while its frame is with the workers or its result is unread
        state.buffer.in_flight = lambda seq: self.bus.frame_in_flight(camera, seq, state.position)
        snapshot = self.bus.tracker_snapshot(camera)
        try:
            if snapshot is not None:
                state.restore(snapshot)
                return state
            reason = "no snapshot"
        except ValueError as err:
            reason = f"unreadable snapshot: {err}"
        if state.position != "0-0" or snapshot is not None:  # a tracker left state this one cannot go on from
            closed = self.bus.close_open_tracks(camera, state.commit())
            log.warning(
                "event=tracking_restarted camera=%s from=%s tracks_closed=%d reason=%r",
                camera,
                state.position,
                closed,
                reason[:200],
            )
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

    def _publish(self, camera: str, state: CameraState, released: list[tuple[int, Held]], late: int = 0) -> None:
        """Track the results the reorder buffer released, in seq order, and commit their tracks entries with
        the camera's position and state (in one transaction: see the module's doc)."""
        tracked = []
        for seq, (_, result) in released:
            if result.gap:  # a skipped or dead frame: its seq is passed, nothing is tracked
                continue
            started = time.perf_counter()
            frame = state.tracker.update(seq, result.captured_at, result.faces)
            TRACK_SECONDS.observe(time.perf_counter() - started)
            entry = TrackEntry(
                camera,
                seq,
                result.index,
                result.captured_at,
                time.time(),
                result.width,
                result.height,
                frame.faces,
            )
            tracked.append((entry, frame))
        now = time.monotonic()
        still_open = []
        if tracked and now - state.recorded_at >= TRACK_RECORD_EVERY_S:  # charts list faces on camera as they go
            new_ids = {t.id for _, frame in tracked for t in frame.started}
            still_open = [t for t in state.tracker.tracks if t.confirmed and t.id not in new_ids]
            state.recorded_at = now
        self.bus.publish_tracks(camera, tracked, self.settings.results_maxlen, still_open, state.commit(late))
        TRACKED.labels(metric_camera(camera)).inc(len(tracked))
        self.frames += len(tracked)

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
            replay_to = Bus.entry_order(state.replay_to)
            for entry_id, fields in items:
                state.position = entry_id
                try:
                    result = Result.from_fields(fields)
                except ProtocolError as err:
                    log.warning("event=bad_result camera=%s entry=%s reason=%r", camera, state.position, str(err))
                    continue
                replayed = Bus.entry_order(entry_id) <= replay_to
                released += state.buffer.push(result.seq, (entry_id, result), replayed)
            state.last_result = time.monotonic()
            state.stopped = False
            self._report_buffer(camera, state.buffer, gaps_before, late_before, bad_before)
            self._publish(camera, state, released, state.buffer.late - late_before)
        self._idle(time.monotonic())

    def _report_buffer(
        self,
        camera: str,
        buffer: ReorderBuffer[Held],
        gaps_before: int,
        late_before: int,
        bad_before: int,
    ) -> None:
        """What the reorder buffer gave up on, got late or refused while it took one read's results (the late
        count is committed with the batch)."""
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
                self.bus.end_tracks(camera, ended, state.commit())
                state.stopped = True
                if ended:
                    log.info("event=camera_quiet camera=%s tracks_ended=%d", camera, len(ended))

    def health(self) -> dict:
        return {
            "ok": self.redis_ok and not self.shutdown.requested,
            "tracker": self.name,
            "redis": "ok" if self.redis_ok else self.redis_trouble,
            "cameras": sorted(self.cameras),
            "frames": self.frames,
        }

    def _step(self) -> None:
        try:
            self.step()
        except Exception as err:
            # what is in memory may be ahead of what Redis holds (a batch tracked whose commit Redis refused,
            # or that an outage cut short): every camera goes on from its last committed snapshot
            self.cameras.clear()
            self._refreshed_at = 0.0
            if not isinstance(err, RedisRefused) or "WRONGTYPE" not in str(err):
                raise
            # a camera's key replaced by another type: the camera refresh now skips that camera
            log.warning("event=cameras_refreshed tracker=%s reason=%r", self.name, str(err)[:120])
            return
        self.redis_ok = True

    def _redis_down(self, err: Exception) -> None:
        self.redis_ok = False
        self.redis_trouble = redis_trouble(err)

    def run(self) -> int:
        self.shutdown.install()
        log.info("event=tracker_started tracker=%s shard=%d/%d", self.name, self.shard, self.shards)
        run_redis_loop(self._step, self.shutdown, self._redis_down)
        self.heartbeat.forget()
        log.info("event=tracker_stopped tracker=%s frames=%d", self.name, self.frames)
        return 0


def run_tracker(settings: Settings, redis_url: str, shard: int, shards: int, metrics_port: int | None = None) -> int:
    return serve(TrackerProcess(settings, redis_url, shard, shards), metrics_port, settings)
