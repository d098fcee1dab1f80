"""`fervi cameras supervise`: run one `fervi ingest` per registered camera and keep it running.

The registry (`fervi cameras add`, `fervi up`, the dashboard's Cameras page) says which cameras should run;
this process starts an ingest for each, restarts one that fails (with backoff, its reason kept on the
camera's state), and stops those that are removed. Each camera has a lease in Redis, so several supervisors
(one per host) share the cameras and take over those of a supervisor that died.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass

from fervi.bus import Bus, connect, process_id, redis_trouble
from fervi.metrics import INGEST_RESTARTS, SUPERVISED
from fervi.protocol import CameraSource
from fervi.service import Heartbeat, Shutdown, run_redis_loop, serve, spawn, stop_processes
from fervi.settings import Settings, mask_password

from .diagnose import INGEST_EXIT_UNUSABLE

log = logging.getLogger(__name__)

LEASE_S = 10.0  # a supervisor that stops renewing loses its cameras to another after this long
POLL_S = 1.0
STOP_GRACE_S = 10.0
RESTART_CAP_S = 60.0
RETRY_NOTE = re.compile(r"( \(trying again in \d+ s\))+$")


@dataclass
class Running:
    source: CameraSource
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    ended: bool = False  # a file that played to its end: not started again until it is registered anew


class CameraSupervisor:
    def __init__(self, settings: Settings, redis_url: str, lease_s: float = LEASE_S, poll_s: float = POLL_S):
        self.settings = settings
        self.redis_url = redis_url
        self.bus = Bus(connect(redis_url))
        self.name = process_id("cameras")
        self.shutdown = Shutdown(self.name)
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.running: dict[str, Running] = {}
        self.stopping: list[tuple[str, subprocess.Popen, float]] = []
        self.wanted: dict[str, CameraSource] = {}
        self.redis_ok = False
        self.redis_error = ""  # why Redis is not usable (unreachable, refusing writes), for /healthz
        self.heartbeat = Heartbeat(self.bus, self.name, "cameras", settings.heartbeat_ttl_s)

    def health(self) -> dict:
        return {
            "ok": self.redis_ok,
            **({"redis": self.redis_error} if self.redis_error else {}),
            "cameras": sorted(self.running),
        }

    # --- children --------------------------------------------------------------------------------
    def _within(self, source: CameraSource) -> list[str]:
        """A file added on the dashboard stays inside this host's FERVI_CAMERA_FILE_ROOTS (checked by the ingest
        at each open, so a link swapped in later is refused too)."""
        if source.origin != "dashboard" or source.kind != "file":
            return []
        return [str(root) for root in self.settings.camera_file_root_list] or ["/nonexistent-no-file-roots"]

    def _start(self, run: Running) -> None:
        env = {k: v for k, v in os.environ.items() if k != "FERVI_DASHBOARD_TOKEN"}  # the ingest has no use for it
        env.update(FERVI_REDIS_URL=self.redis_url, **run.source.ingest_env())
        run.process = spawn(run.source.ingest_args(self._within(run.source)), env)
        run.started_at = time.monotonic()
        log.info(
            "event=ingest_started camera=%s pid=%d source_kind=%s", run.source.camera, run.process.pid, run.source.kind
        )

    def _stop(self, camera: str, why: str) -> None:
        """SIGTERM to the camera's ingest; `_reap` waits for it without holding up the other cameras."""
        run = self.running.pop(camera)
        if run.process is not None and run.process.poll() is None:
            run.process.send_signal(signal.SIGTERM)
            self.stopping.append((camera, run.process, time.monotonic() + STOP_GRACE_S))
        else:
            self.bus.release_source_lease(camera, self.name)
        log.info("event=ingest_stopping camera=%s why=%s", camera, why)

    def _reap(self, now: float) -> None:
        """Ingests that were told to stop: release each camera's lease once its ingest is gone (SIGKILL after
        the grace period), so another supervisor cannot start a second one meanwhile."""
        still = []
        for camera, process, deadline in self.stopping:
            if process.poll() is None and now < deadline:
                still.append((camera, process, deadline))
                continue
            if process.poll() is None:
                log.warning("event=ingest_killed camera=%s", camera)
                process.kill()
                process.wait()
            self.bus.release_source_lease(camera, self.name)
            if camera not in self.wanted:  # removed: its last words ("stopped") go with it
                self.bus.clear_source_state(camera)
            log.info("event=ingest_stopped camera=%s", camera)
        self.stopping = still

    def _exited(self, camera: str, run: Running, code: int, now: float) -> None:
        run.process = None
        if code == 0:  # a file that ended (a live source only ends on SIGTERM, which is ours)
            run.ended = True
            log.info("event=ingest_ended camera=%s", camera)
            return
        if code == INGEST_EXIT_UNUSABLE:  # a text file, a missing one: starting it again cannot help
            run.ended = True
            log.warning("event=ingest_unusable camera=%s not_retried=1", camera)
            return
        if now - run.started_at > 60:
            run.restarts = 0  # it ran a good while: a fresh failure, not a crash loop
        delay = min(RESTART_CAP_S, 1.0 * 2**run.restarts)
        run.restarts += 1
        run.next_start = now + delay
        reason = self.bus.source_states([camera]).get(camera, {}).get("reason") or f"ingest exited with code {code}"
        reason = RETRY_NOTE.sub("", reason)  # the ingest may have died before writing a fresh one
        self.bus.set_source_state(
            camera, "error", f"{reason} (trying again in {delay:.0f} s)", source=mask_password(run.source.source)
        )
        log.warning("event=ingest_exited camera=%s code=%s restart_in_s=%.0f reason=%r", camera, code, delay, reason)

    # --- one pass --------------------------------------------------------------------------------
    def step(self) -> None:
        self.heartbeat.beat(cameras=len(self.running))
        wanted = self.wanted = self.bus.sources()
        self.redis_ok = True
        self._reap(time.monotonic())
        for camera in list(self.running):
            if camera not in wanted:
                self._stop(camera, "removed")
                self.bus.clear_source_state(camera)
            elif wanted[camera] != self.running[camera].source:
                self._stop(camera, "changed")
            elif not self.bus.hold_source_lease(camera, self.name, self.lease_s):
                self._stop(camera, "lease_lost")  # another supervisor runs it now
        now = time.monotonic()
        for camera, source in wanted.items():
            run = self.running.get(camera)
            if run is None:
                if any(c == camera for c, _, _ in self.stopping):
                    continue  # its previous ingest is still stopping (a changed camera): start when it is gone
                if not self.bus.hold_source_lease(camera, self.name, self.lease_s):
                    continue  # another supervisor runs it
                run = self.running[camera] = Running(source)
            if run.process is not None and (code := run.process.poll()) is not None:
                self._exited(camera, run, code, now)
            if run.process is None and not run.ended and now >= run.next_start:
                if run.started_at:
                    INGEST_RESTARTS.labels(camera).inc()
                self._start(run)
        SUPERVISED.set(len(self.running))

    def run(self) -> int:
        self.shutdown.install()
        log.info("event=supervisor_started name=%s", self.name)

        def step() -> None:
            self.step()
            self.redis_error = ""
            self.shutdown.wait(self.poll_s)

        def down(err: Exception) -> None:
            self.redis_ok, self.redis_error = False, redis_trouble(err)

        try:
            run_redis_loop(
                step,
                self.shutdown,
                on_redis_down=down,
                on_error=lambda err: log.exception("event=supervisor_error error=%r", str(err)),
            )
        finally:
            cameras = list(self.running) + [c for c, _, _ in self.stopping]
            stop_processes(
                [r.process for r in self.running.values() if r.process is not None] + [p for _, p, _ in self.stopping],
                STOP_GRACE_S,
            )
            for camera in cameras:
                self.bus.release_source_lease(camera, self.name)
            self.running.clear()
            self.heartbeat.forget()
            log.info("event=supervisor_stopped cameras=%d", len(cameras))
        return 0


def run_supervisor(settings: Settings, redis_url: str, metrics_port: int | None = None) -> int:
    return serve(CameraSupervisor(settings, redis_url), metrics_port, settings)
