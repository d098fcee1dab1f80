"""`fervi ingest`: read a source, JPEG-encode its frames and add them to the camera's stream.

Live sources never wait: frames beyond `--fps` and frames that arrive while Redis is away are dropped and
counted. File sources wait instead: for Redis to come back, and while the workers' backlog is above
`FERVI_FILE_MAX_LAG`, so no frame of a file is lost.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from fervi.bus import REDIS_DOWN, Bus, RedisRefused, connect, process_id, redis_trouble, refuses_writes
from fervi.clock import ServerClock, skew_text
from fervi.metrics import BACKLOG, FRAMES_DROPPED, FRAMES_INGESTED
from fervi.protocol import DeadLetter, Frame, check_camera
from fervi.service import Backoff, Heartbeat, Shutdown, serve
from fervi.settings import Settings, mask_password
from fervi.vision.images import encode_jpeg

from .diagnose import INGEST_EXIT_UNUSABLE, NOT_RETRIED, is_permanent
from .sources import Buffering, Captured, Source, SourceError, is_live_spec, open_source

log = logging.getLogger(__name__)

BACKPRESSURE_POLL_S = 0.01


STATE_EVERY_S = 2.0


class Publisher:
    def __init__(
        self,
        settings: Settings,
        redis_url: str,
        camera: str,
        spec: str,
        fps: float | None = None,
        loop: bool = False,
        live: bool | None = None,
        within: list[str] | None = None,
    ):
        self.settings = settings
        self.camera = check_camera(camera)
        self.spec = spec
        self.shown = mask_password(spec)  # the source as logs and the dashboard show it (no password)
        self.fps = fps
        self.loop = loop
        self.live_override = live
        self.within = within or []
        self.reported: set[tuple[int, str]] = set()  # unreadable files already reported
        self.next_at = 0.0  # when the next frame is due: kept across loops of a file, so --fps holds
        self.bus = Bus(connect(redis_url))
        self.name = process_id(f"ingest-{camera}")
        self.shutdown = Shutdown(self.name)
        self.sent = 0
        self.dropped = 0
        self.skipped = 0  # unreadable files of a folder (dead-lettered)
        self.redis_backoff = Backoff("redis")
        self.clock = ServerClock(self.bus.server_time)  # frames stamped in Redis's time where this host's is off
        self.clock_reported = False
        self.redis_ok = False
        self.redis_error = ""  # why Redis is not usable, for /healthz
        self._registered = False
        self.heartbeat = Heartbeat(self.bus, self.name, "ingest", settings.heartbeat_ttl_s)
        self.state = ""
        self.state_at = float("-inf")

    def _check_clock(self) -> None:
        """Measure this host's clock against Redis's when due; say when it goes off or comes back."""
        self.clock.measure()
        if self.clock.skewed != self.clock_reported:
            self.clock_reported = self.clock.skewed
            if self.clock.skewed:
                log.warning(
                    "event=clock_skew camera=%s offset_s=%.3f detail=%r",
                    self.camera,
                    self.clock.offset_s,
                    f"this host's clock is {skew_text(self.clock.offset_s)}: frames are stamped in Redis's time",
                )
            else:
                log.info("event=clock_skew_gone camera=%s offset_s=%.3f", self.camera, self.clock.offset_s)
            self.report(self.state or "starting", force=True)

    def report(self, state: str, reason: str = "", force: bool = True) -> None:
        """The camera's ingest state for the dashboard's Cameras page (`fervi.protocol.SOURCE_STATES`)."""
        now = time.monotonic()
        if not force and state == self.state and now - self.state_at < STATE_EVERY_S:
            return
        reason = reason.replace(self.spec, self.shown)
        if state != self.state or reason:
            log.info("event=source_state camera=%s state=%s reason=%r", self.camera, state, reason)
        self.state, self.state_at = state, now
        self.bus.set_source_state(
            self.camera,
            state,
            reason,
            now=time.time() + self.clock.correction_s(),  # the dashboard compares it with its own time
            source=self.shown,
            sent=self.sent,
            dropped=self.dropped,
            skipped=self.skipped,
            pid=self.name,
            clock_offset_s=f"{self.clock.offset_s:.3f}",
        )

    def health(self) -> dict:
        return {
            "ok": self.redis_ok,
            **({"redis": self.redis_error} if self.redis_error else {}),
            "camera": self.camera,
            "clock_offset_s": round(self.clock.offset_s, 3),
            "sent": self.sent,
            "dropped": self.dropped,
            "skipped": self.skipped,
        }

    def _live(self, source: Source) -> bool:
        return source.buffering is Buffering.DROP_OLDEST if self.live_override is None else self.live_override

    def _publish(self, captured: Captured, live: bool) -> bool:
        """Add one frame; True when it went out. Live frames are dropped while Redis is away."""
        assert captured.image is not None, "an unreadable item is dead-lettered (`_unreadable`), not published"
        height, width = captured.image.shape[:2]
        frame = Frame(
            self.camera,
            captured.captured_at,
            width,
            height,
            encode_jpeg(captured.image, self.settings.jpeg_quality),
            live,
            captured.index,
        )
        while not self.shutdown.requested:
            try:
                if not self._registered:
                    self.bus.register_camera(self.camera)
                    self._registered = True
                self._check_clock()
                if not live:
                    self._wait_for_backlog()
                # in Redis's time where this host's clock is off (`fervi.clock`)
                frame.captured_at = captured.captured_at + self.clock.correction_s()
                self.bus.add_frame(frame, self.settings.live_maxlen if live else 0)
                self._heartbeat()
                self.redis_ok, self.redis_error = True, ""
                self.redis_backoff.succeeded()
                return True
            except (*REDIS_DOWN, RedisRefused) as err:
                if isinstance(err, REDIS_DOWN) or refuses_writes(err):  # away, or refusing writes: waited out
                    self.redis_ok, self.redis_error = False, redis_trouble(err)
                else:  # the camera's keys spoilt by some client (WRONGTYPE)
                    self.bus.untrusted.skip("camera_keys", self.camera, str(err))
                self._registered = False
                if live:  # a live camera does not wait for Redis: this frame is gone, the next one is fresh
                    self.redis_backoff.failed(err, self.shutdown)
                    return False
                self.redis_backoff.failed(err, self.shutdown)
        return False

    def _unreadable(self, captured: Captured) -> None:
        """A file of a folder that is no usable image: a dead letter with the reason, then the next file.
        A looping folder reports each such file once, not at every pass."""
        self.skipped += 1
        if (captured.index, captured.error) in self.reported:
            return
        self.reported.add((captured.index, captured.error))
        log.warning("event=unreadable_input camera=%s index=%d error=%r", self.camera, captured.index, captured.error)
        letter = DeadLetter(self.camera, "", captured.error, self.name, time.time(), {"index": str(captured.index)})
        try:
            self.bus.dead_letter(letter, ack=False)
        except REDIS_DOWN as err:
            log.warning("event=dead_letter_lost camera=%s error=%r", self.camera, str(err))

    def _wait_for_backlog(self) -> None:
        while not self.shutdown.requested:
            backlog = self.bus.backlog(self.camera)
            BACKLOG.labels(self.camera).set(backlog)
            if backlog < self.settings.file_max_lag:
                return
            time.sleep(BACKPRESSURE_POLL_S)

    def _heartbeat(self) -> None:
        now = time.time() + self.clock.correction_s()  # `fervi status` compares it with its own time
        self.heartbeat.beat(now, camera=self.camera, source=self.shown, sent=self.sent)

    def _play(self, source: Source) -> None:
        live = self._live(source)
        fps = self.fps or (source.fps if live and self.live_override else None)
        interval = 1.0 / fps if fps else 0.0
        next_at = max(self.next_at, time.monotonic() - interval)
        for captured in source.frames():
            if self.shutdown.requested:
                return
            if captured.image is None:
                self._unreadable(captured)
                continue
            if interval:
                now = time.monotonic()
                if now < next_at:
                    if live and source.buffering is Buffering.DROP_OLDEST:
                        continue  # a real camera keeps streaming: drop frames faster than the fps cap
                    self.shutdown.wait(next_at - now)
                    # a file played at a pace: its frame is "captured" when released, not when read ahead
                    captured = replace(captured, captured_at=time.time())
                next_at = max(next_at + interval, time.monotonic() - interval)
                self.next_at = next_at
            if self._publish(captured, live):
                self.sent += 1
                FRAMES_INGESTED.labels(self.camera).inc()
                self.report("live" if live else "playing", force=False)
            elif not self.shutdown.requested:
                self.dropped += 1
                FRAMES_DROPPED.labels(self.camera).inc()

    def _masked(self, err: Exception) -> SourceError:
        return SourceError(str(err).replace(self.spec, self.shown))

    def _failed(self, err: SourceError) -> int:
        """A file source that failed: exit 2, or INGEST_EXIT_UNUSABLE when it can never work as given (the
        supervisor then leaves it stopped)."""
        log.error("event=source_failed camera=%s error=%r", self.camera, str(self._masked(err)))
        permanent = is_permanent(str(err))
        self.report("error", str(err) + (f" ({NOT_RETRIED})" if permanent else ""))
        self.heartbeat.forget()
        return INGEST_EXIT_UNUSABLE if permanent else 2

    def run(self) -> int:
        self.shutdown.install()
        source_backoff = Backoff(f"source {self.shown}", initial_s=0.5, cap_s=30)
        log.info("event=ingest_started camera=%s source=%s", self.camera, self.shown)
        self.report("starting")
        while not self.shutdown.requested:
            try:
                source = open_source(
                    self.spec, self.settings.max_frame_pixels, self.settings.max_image_bytes, self.within
                )
            except SourceError as err:
                if is_live_spec(self.spec):  # a live source may come back
                    self.report("reconnecting", str(err))
                    source_backoff.failed(self._masked(err), self.shutdown)
                    continue
                return self._failed(err)
            sent_before = self.sent
            try:
                self._play(source)
            except SourceError as err:
                if not is_live_spec(self.spec):
                    return self._failed(err)
                if self.sent > sent_before:  # it delivered frames: start the backoff afresh
                    source_backoff.succeeded()
                self.report("reconnecting", str(err))
                source_backoff.failed(self._masked(err), self.shutdown)
                continue
            finally:
                source.close()
            if not self.loop:  # a live source only returns here on shutdown; a file ends
                break
        self.report("stopped" if self.shutdown.requested else "ended")
        self.heartbeat.forget()
        log.info(
            "event=ingest_stopped camera=%s sent=%d dropped=%d skipped=%d",
            self.camera,
            self.sent,
            self.dropped,
            self.skipped,
        )
        return 0


def run_ingest(
    settings: Settings,
    redis_url: str,
    camera: str,
    spec: str,
    fps: float | None,
    loop: bool,
    live: bool | None,
    metrics_port: int | None = None,
    within: list[str] | None = None,
) -> int:
    return serve(Publisher(settings, redis_url, camera, spec, fps, loop, live, within), metrics_port, settings)
