"""The dashboard's background task: tracks entries and preview frames from Redis to Socket.IO rooms.

One room per camera; a browser joins only the cameras it views. With several dashboard processes
behind the Socket.IO Redis message queue, only the holder of a Redis lock relays, so no event is sent
twice; another process takes over within `LOCK_TTL_S` when the holder dies.
"""

from __future__ import annotations

import logging
import time

from fervi.bus import Bus, frame_rates, redis_trouble
from fervi.metrics import RELAY_LATENCY
from fervi.protocol import IMAGE_CAMERA_PREFIX, ProtocolError, TrackEntry
from fervi.service import Heartbeat, Shutdown, run_redis_loop

from . import challenge

log = logging.getLogger(__name__)


LOCK_TTL_S = 5
FRAME_EVERY_S = 0.2  # preview images per camera, at most 5 a second
CAMERAS_EVERY_S = 1.0
CAMERA_GONE_S = 15.0
# A camera removed from the registry ends then, on the wall and in the charts' list, though frames its ingest
# sent before the supervisor stopped it (within its 1 s poll and 10 s stop grace) come for a while; one whose
# frames were captured later than this after its removal streams again (a `fervi ingest` under its name)
REMOVED_DRAIN_S = 12.0
SWEEP_EVERY_S = 2.0
WEBCAM_GRACE_S = 10.0  # a browser camera's keys are deleted this long after it left (frames in flight drain)
ONE_OFF_MAX_AGE_S = 120.0  # an image-mode camera left behind (its dashboard died mid-request) goes after this
WALL_ROOM = "wall"


def track_payload(entry: TrackEntry) -> dict:
    now = time.time()
    return {
        "camera": entry.camera,
        "seq": entry.seq,
        "ts": entry.captured_at,
        "w": entry.width,
        "h": entry.height,
        "latency_ms": round((entry.tracked_at - entry.captured_at) * 1000, 1),
        "age_ms": round((now - entry.captured_at) * 1000, 1),
        "faces": entry.faces.to_list(),
    }


RELAY_STALE_S = 10.0  # /healthz fails when the relay has not run through a step for this long


class Relay:
    def __init__(
        self, socketio, bus: Bus, name: str, block_ms: int = 500, web_idle_s: float = 30.0, heartbeat_ttl_s: int = 15
    ):
        self.socketio = socketio
        self.bus = bus
        self.name = name
        self.block_ms = block_ms
        self.positions: dict[str, str] = {}
        self.frame_sent: dict[str, float] = {}
        self.stamps: dict[str, list[tuple[float, int]]] = {}  # camera -> its newest tracked (capture time, seq)
        self.cameras_sent = 0.0
        self.web_idle_s = web_idle_s
        self.swept_at = 0.0
        self.round_progress: dict[str, dict] = {}  # round id -> held, best, last_ts (the relay's own count)
        self.heartbeat = Heartbeat(bus, name, "dashboard", heartbeat_ttl_s)
        self.leading = False
        self.shutdown = Shutdown(name)  # set by `stop` (the dashboard's own signal handling stops the server)
        self.last_ok = time.monotonic()  # the last step that ran through
        self.last_error = ""

    def health(self, stale_s: float = RELAY_STALE_S) -> tuple[bool, str]:
        """Failing when no step has run through for `stale_s` (Redis away, or an error in every step)."""
        if time.monotonic() - self.last_ok <= stale_s:
            return True, ""
        return False, f"live relay failing for {time.monotonic() - self.last_ok:.0f} s: {self.last_error or 'no step'}"

    def camera_list(self, cameras: list[str] | None = None) -> list[dict]:
        """Cameras with a tracked frame in the last `CAMERA_GONE_S` seconds, and the cameras FERVI runs
        (`Bus.sources`) however long they are quiet, marked `stalled`, with their ingest's state and reason:
        a camera that stopped for good and is not registered leaves the wall. A browser camera only when
        its user shares it. `cameras`: `Bus.cameras()` when the caller has it."""
        now = time.time()
        private = set(self.bus.webcams()) - self.bus.shared_webcams()
        titles = self.bus.webcam_titles()  # a browser camera's name, as its user shares it
        registered, removed = set(self.bus.sources()), self.bus.removed_sources()
        last_frame = {
            c: self.bus.last_frame_at(c)
            for c in (self.bus.cameras() if cameras is None else cameras)
            if not c.startswith(IMAGE_CAMERA_PREFIX) and c not in private
        }
        shown = {
            c: now - at >= CAMERA_GONE_S
            for c, at in last_frame.items()
            if c in registered or (now - at < CAMERA_GONE_S and at > removed.get(c, 0.0) + REMOVED_DRAIN_S)
        }
        states = self.bus.source_states([c for c in shown if c in registered])
        return [
            {
                "camera": c,
                "title": titles.get(c, c),
                "active": self.bus.active_faces(c),
                **self._rates(c),
                "stalled": stalled,
                # what its ingest says of it (a quiet tile tells why: "reconnecting: refused ...")
                "state": states.get(c, {}).get("state", ""),
                "reason": states.get(c, {}).get("reason", ""),
            }
            for c, stalled in shown.items()
        ]

    def _rates(self, camera: str) -> dict[str, float]:
        """Processed and sent frames a second (`frame_rates`): from the frames this relay saw, or from the
        tracks stream where it saw none (a standby dashboard process)."""
        stamps = self.stamps.get(camera)
        return frame_rates(stamps) if stamps else self.bus.frame_rates(camera)

    def _own_rates(self, cameras: list[str]) -> None:
        """Each browser camera's rates to its own client (its page shows them as the wall does), shared or not."""
        for camera, client in self.bus.webcam_clients().items():
            if camera in cameras and camera in self.stamps:
                self.socketio.emit("rates", {"camera": camera, **self._rates(camera)}, to=client)

    def _sweep(self, now: float) -> None:
        if now - self.swept_at < SWEEP_EVERY_S:
            return
        self.swept_at = now
        left, forgotten = self.bus.sweep_webcams(self.web_idle_s, WEBCAM_GRACE_S)
        forgotten += self.bus.sweep_one_off_cameras(ONE_OFF_MAX_AGE_S)
        for camera in left:
            log.info("event=webcam_idle camera=%s idle_s=%.0f", camera, self.web_idle_s)
        for camera in forgotten:
            log.info("event=camera_forgotten camera=%s", camera)

    def _rounds(self, entries: dict[str, list[TrackEntry]]) -> None:
        """Feed the new tracks entries to the challenge rounds on their cameras; settle won and timed-out ones."""
        rounds = self.bus.rounds()
        playing = {r["id"] for r in rounds.values() if r.get("state") == "playing"}
        self.round_progress = {i: p for i, p in self.round_progress.items() if i in playing}
        now = time.time()
        for player, record in rounds.items():
            if record.get("state") != "playing":
                continue
            record.update(self.round_progress.get(record["id"], {}))
            try:
                won = any(challenge.observe(record, e) for e in entries.get(record["camera"], []))
                late = now > float(record["deadline"])
            except (KeyError, TypeError, ValueError) as err:  # a record not written by FERVI
                self.bus.untrusted.skip("challenge_round", player, repr(err))
                self.bus.drop_round(player)
                continue
            self.round_progress[record["id"]] = {k: record[k] for k in ("held", "best", "last_ts")}
            if won or late:
                progress = self.round_progress.pop(record["id"])
                final = self.bus.settle_round(
                    player, record["id"], lambda r, won=won, p=progress: challenge.settle({**r, **p}, won)
                )
                if final is not None:
                    log.info(
                        "event=round_%s player=%s camera=%s target=%s points=%d scored=%s",
                        final["state"],
                        player,
                        final["camera"],
                        final["target"],
                        final["points"],
                        final["scored"],
                    )
                    if final.get("game_over"):  # settled once, here: the game's score is recorded once
                        best = self.bus.record_game(final["name"], final["game_score"])
                        log.info("event=game_over name=%r score=%d best=%s", final["name"], final["game_score"], best)
                    self.socketio.emit("challenge", challenge.progress(final, now), to=player)
            elif record["camera"] in entries:
                self.socketio.emit("challenge", challenge.progress(record, now), to=player)

    def step(self) -> None:
        self.leading = self.bus.hold_relay_lock(self.name, LOCK_TTL_S)
        # every dashboard process is listed by `fervi status`, the relaying one marked
        self.heartbeat.beat(relay="leader" if self.leading else "standby")
        if not self.leading:
            time.sleep(1.0)
            return
        now = time.time()
        self._sweep(now)
        cameras = self.bus.cameras()
        for camera in cameras:
            self.positions.setdefault(camera, "$")
        for camera in set(self.positions) - set(cameras):  # gone (a browser camera whose client left)
            del self.positions[camera]
            self.frame_sent.pop(camera, None)
            self.stamps.pop(camera, None)
        if now - self.cameras_sent >= CAMERAS_EVERY_S:
            self.socketio.emit("cameras", self.camera_list(cameras), to=WALL_ROOM)
            self._own_rates(cameras)
            self.cameras_sent = now
        if not self.positions:
            time.sleep(self.block_ms / 1000)
            self._rounds({})
            return
        reply = self.bus.read_tracks(self.positions, 50, self.block_ms)
        clients = self.bus.webcam_clients() if reply else {}
        entries: dict[str, list[TrackEntry]] = {}
        for camera, items in reply:
            latest = None
            for entry_id, fields in items:
                self.positions[camera] = entry_id
                try:
                    latest = TrackEntry.from_fields(fields)
                except ProtocolError:
                    continue
                entries.setdefault(camera, []).append(latest)
                stamps = self.stamps.setdefault(camera, [])
                stamps.append((latest.captured_at, latest.seq))
                del stamps[:-60]
            if latest is None:
                continue
            RELAY_LATENCY.observe(max(0.0, latest.tracked_at - latest.captured_at))
            # watchers of the camera's room and, for a browser camera, its own client (its private room)
            to = [camera, clients[camera]] if camera in clients else camera
            self.socketio.emit("tracks", track_payload(latest), to=to)
            if time.time() - self.frame_sent.get(camera, 0.0) >= FRAME_EVERY_S:
                frame = self.bus.latest_frame(camera)
                if frame:
                    self.socketio.emit("frame", {"camera": camera, "seq": frame[0], "jpeg": frame[1]}, to=to)
                    self.frame_sent[camera] = time.time()
        self._rounds(entries)

    @property
    def running(self) -> bool:
        return not self.shutdown.requested

    def stop(self) -> None:
        self.shutdown.event.set()
        self.heartbeat.forget()

    def _step(self) -> None:
        self.step()
        self.last_ok = time.monotonic()

    def _redis_down(self, err: Exception) -> None:
        self.last_error = f"redis {redis_trouble(err)}"

    def _error(self, err: Exception) -> None:
        """The relay must outlive any one bad event."""
        self.last_error = f"{err.__class__.__name__}: {err}"
        log.exception("event=relay_error")

    def run(self) -> None:
        run_redis_loop(self._step, self.shutdown, self._redis_down, self._error, what="redis (dashboard relay)")
