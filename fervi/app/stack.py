"""`fervi up`: the whole stack as child processes under one supervisor.

Starts the embedded Redis unless FERVI_REDIS_URL is set, then workers, the tracker, an RQ worker for
offline videos, the dashboard and the camera supervisor as `fervi` subcommands (the same commands
docker-compose runs). The demo camera and `--camera` ones are registered for the supervisor (origin "up",
replaced at the next `fervi up`); cameras added on the dashboard or with `fervi cameras add` stay registered.
A child that dies is restarted with backoff;
Ctrl-C or SIGTERM stops every child (SIGTERM, then SIGKILL after a grace period) and then Redis.
While it runs, `<FERVI_HOME>/stack.json` says where its Redis and dashboard are, so that `fervi status`
and other commands find them without FERVI_REDIS_URL.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fervi.bus import Bus, connect
from fervi.demo import write_video
from fervi.embedded import EmbeddedRedis
from fervi.protocol import CameraSource
from fervi.service import Shutdown, spawn, stop_processes
from fervi.settings import Settings

log = logging.getLogger(__name__)

GRACE_S = 15.0
DEMO_FPS = 10.0
STACK_FILE = "stack.json"


class PortBusy(RuntimeError):
    """The dashboard's port is taken by another program."""


def check_port_free(host: str, port: int) -> None:
    """Fail before anything starts when the dashboard could not listen (instead of a restart loop)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise PortBusy(
                f"cannot serve the dashboard on {host}:{port}: {err.strerror or err} (another program "
                "uses it?): choose another with --port or FERVI_DASHBOARD_PORT"
            ) from None


def running_stack(home: str | Path) -> dict[str, Any] | None:
    """What a running `fervi up` wrote to FERVI_HOME (redis, dashboard, pid), or None."""
    path = Path(home) / STACK_FILE
    try:
        info: dict[str, Any] = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)  # the supervisor is alive (signal 0 only checks)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info


@dataclass
class Child:
    name: str
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)


class Stack:
    def __init__(self, settings: Settings, workers: int | None, demo: bool, cameras: list[tuple[str, str]]):
        self.settings = settings
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self.demo = demo
        self.cameras = cameras
        self.shutdown = Shutdown("stack")
        self.redis: EmbeddedRedis | None = None

    def _children(self) -> list[Child]:
        children = [Child(f"worker-{i + 1}", ["worker"]) for i in range(self.workers)]
        children.append(Child("tracker", ["tracker"]))
        children.append(Child("rq-worker", ["rq-worker"]))
        children.append(Child("dashboard", ["dashboard"]))
        children.append(Child("cameras", ["cameras", "supervise"]))
        return children

    def _register_cameras(self, url: str) -> None:
        """This run's cameras (the demo, `--camera`) replace those of the previous `fervi up`."""
        ours = []
        if self.demo:
            video = write_video(
                Path(self.settings.home).resolve() / "demo" / "demo-loop.mp4", frames=120, fps=DEMO_FPS, seamless=True
            )
            ours.append(CameraSource("demo", str(video), loop=True, live=True, origin="up"))
        ours += [CameraSource(name, source, origin="up") for name, source in self.cameras]
        bus = Bus(connect(url))
        for camera, source in bus.sources().items():
            if source.origin == "up" and camera not in {c.camera for c in ours}:
                bus.remove_source(camera)
        for source in ours:
            bus.add_source(source, replace=True)

    def _start(self, child: Child, env: dict[str, str]) -> None:
        child.process = spawn(child.args, env)
        child.started_at = time.monotonic()
        log.info("event=child_started name=%s pid=%d command=%r", child.name, child.process.pid, " ".join(child.args))

    def run(self) -> int:
        self.shutdown.install()
        url = self.settings.redis_url
        if not url:
            self.redis = EmbeddedRedis(Path(self.settings.home) / "redis", self.settings.redis_port).start()
            url = self.redis.url
        host, port = self.settings.dashboard_host, self.settings.dashboard_port
        env = {**os.environ, "FERVI_REDIS_URL": url, "FERVI_DASHBOARD_HOST": host, "FERVI_DASHBOARD_PORT": str(port)}
        children = self._children()
        stack_file = Path(self.settings.home) / STACK_FILE
        try:
            self._register_cameras(url)
            for child in children:
                self._start(child, env)
            stack_file.write_text(
                json.dumps({"pid": os.getpid(), "redis": url, "dashboard": f"http://{host}:{port}/"}) + "\n"
            )
            log.info(
                "event=stack_up redis=%s workers=%d cameras=%d dashboard=http://%s:%d/ status_file=%s",
                url,
                self.workers,
                len(self.cameras) + int(self.demo),
                host,
                port,
                stack_file,
            )
            while not self.shutdown.wait(0.5):
                self._supervise(children, env)
        finally:
            stack_file.unlink(missing_ok=True)
            try:
                self._stop(children)
            finally:  # even when a second Ctrl-C cuts the children's grace period short
                if self.redis:
                    self.redis.stop()
        return 0

    def _supervise(self, children: list[Child], env: dict[str, str]) -> None:
        now = time.monotonic()
        for child in children:
            if child.process is not None and child.process.poll() is not None:
                code = child.process.returncode
                child.process = None
                if now - child.started_at > 60:
                    child.restarts = 0  # it ran a good while: a fresh failure, not a crash loop
                delay = min(30.0, 0.5 * 2**child.restarts)
                child.restarts += 1
                child.next_start = now + delay
                log.warning("event=child_exited name=%s code=%s restart_in_s=%.1f", child.name, code, delay)
            if child.process is None and now >= child.next_start:
                self._start(child, env)

    def _stop(self, children: list[Child]) -> None:
        names = {c.process.pid: c.name for c in children if c.process is not None}
        stopped = stop_processes(
            [c.process for c in children if c.process is not None],
            GRACE_S,
            on_kill=lambda p: log.warning("event=child_killed name=%s", names[p.pid]),
        )
        log.info("event=stack_down children=%d", stopped)
