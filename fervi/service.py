"""What every long-running FERVI process shares, written once: warm/cold shutdown, a health and metrics
endpoint, a heartbeat in Redis, reconnecting with capped exponential backoff, and starting and stopping
`fervi` child processes.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .bus import REDIS_DOWN, refuses_writes

if TYPE_CHECKING:
    from types import FrameType

    from .bus.processes import Processes
    from .settings import Settings

    class Process(Protocol):
        """A long-running process as `serve` runs it."""

        def health(self) -> dict[str, Any]: ...

        def run(self) -> int: ...


log = logging.getLogger(__name__)


class Shutdown:
    """First SIGTERM/SIGINT: finish the current batch, then stop (warm). Second: stop now (cold)."""

    def __init__(self, name: str):
        self.name = name
        self.event = threading.Event()

    def install(self) -> Shutdown:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.event.is_set():
            log.warning("event=cold_shutdown process=%s signal=%s", self.name, signal.Signals(signum).name)
            raise SystemExit(1)
        log.info("event=warm_shutdown process=%s signal=%s", self.name, signal.Signals(signum).name)
        self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        return self.event.wait(seconds)


class OpsServer:
    """`/healthz` (JSON from `health()`, 503 when unhealthy) and `/metrics` (Prometheus) on one port."""

    def __init__(self, health: Callable[[], dict[str, Any]], port: int = 0, host: str = "127.0.0.1"):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.startswith("/metrics"):
                    body, status, kind = generate_latest(), 200, CONTENT_TYPE_LATEST
                elif self.path.startswith("/healthz"):
                    state = outer.health()
                    body = json.dumps(state).encode()
                    status, kind = (200 if state.get("ok") else 503), "application/json"
                else:
                    body, status, kind = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:  # access logs would drown the event log
                pass

        self.health = health
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, name="ops-http", daemon=True).start()
        log.info("event=ops_listening url=http://%s:%d/healthz", host, self.port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Backoff:
    """Capped exponential backoff; logs the first failure of an outage and then every doubling, not each try."""

    def __init__(self, what: str, initial_s: float = 0.2, cap_s: float = 10.0):
        self.what = what
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.delay_s = 0.0
        self.failures = 0
        self.down_since = 0.0

    def failed(self, err: Exception, shutdown: Shutdown | None = None) -> None:
        if self.failures == 0:
            self.down_since = time.monotonic()
        self.failures += 1
        self.delay_s = min(self.cap_s, self.initial_s if self.delay_s == 0 else self.delay_s * 2)
        if self.failures & (self.failures - 1) == 0:  # 1, 2, 4, 8, ...
            log.warning(
                "event=%s what=%s attempt=%d retry_in_s=%.1f error=%r",
                "refusing_writes" if refuses_writes(err) else "reconnecting",  # up, but full (OOM, MISCONF)
                self.what,
                self.failures,
                self.delay_s,
                str(err)[:200],
            )
        if shutdown is not None:
            shutdown.wait(self.delay_s)
        else:
            time.sleep(self.delay_s)

    def succeeded(self) -> None:
        if self.failures:
            log.info(
                "event=reconnected what=%s attempts=%d down_s=%.1f",
                self.what,
                self.failures,
                time.monotonic() - self.down_since,
            )
        self.failures = 0
        self.delay_s = 0.0


def run_redis_loop(
    step: Callable[[], object],
    shutdown: Shutdown,
    on_redis_down: Callable[[Exception], object] | None = None,
    on_error: Callable[[Exception], object] | None = None,
    what: str = "redis",
) -> bool:
    """Call `step` until shutdown; Redis outages back off and are retried. Returns whether Redis was up
    at the last step. `on_redis_down(err)` runs at each outage failure (to forget state the server may have
    lost). With `on_error`, any other exception is handed to it and the loop goes on a second later (a
    process that must outlive one bad event); without, it ends the loop."""
    backoff = Backoff(what)
    up = False
    while not shutdown.requested:
        try:
            step()
            up = True
            backoff.succeeded()
        except Exception as err:  # noqa: BLE001 - Redis away or refusing writes: waited out; else on_error, or raised
            if isinstance(err, REDIS_DOWN) or refuses_writes(err):
                up = False
                if on_redis_down:
                    on_redis_down(err)
                backoff.failed(err, shutdown)
                continue
            if on_error is None:
                raise
            on_error(err)
            shutdown.wait(1.0)
    return up


class Heartbeat:
    """A process's entry in the registry that `fervi status` lists: written at most every `every_s`, kept
    `ttl_s` (so a process that dies leaves the list by itself), removed by `forget` on a clean exit."""

    def __init__(self, bus: Processes, name: str, kind: str, ttl_s: int, every_s: float = 2.0):
        self.bus, self.name, self.kind, self.ttl_s, self.every_s = bus, name, kind, ttl_s, every_s
        self.at = float("-inf")

    def beat(self, now: float | None = None, **info: object) -> None:
        now = time.time() if now is None else now
        if now - self.at < self.every_s:
            return
        self.at = now
        self.bus.heartbeat(
            self.name, {"kind": self.kind, "host": socket.gethostname(), **info, "last_seen": f"{now:.0f}"}, self.ttl_s
        )

    def forget(self) -> None:
        self.bus.forget(self.name)


def serve(process: Process, metrics_port: int | None, settings: Settings) -> int:
    """Run a long-running process (`.health()`, `.run()`) with its /healthz and /metrics endpoint."""
    ops = OpsServer(
        process.health, settings.metrics_port if metrics_port is None else metrics_port, settings.metrics_host
    )
    try:
        return process.run()
    finally:
        ops.close()


def die_with_parent() -> None:
    """`preexec_fn` for child processes: Linux sends them SIGTERM if their supervisor dies, even by SIGKILL,
    so no worker or Redis is left orphaned (they run in their own sessions, away from the terminal's Ctrl-C)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: children outlive a killed supervisor


def fervi_command(*args: str) -> list[str]:
    """A `fervi` subcommand run by this Python (the same commands docker-compose runs)."""
    return [sys.executable, "-m", "fervi", *args]


def spawn(args: list[str], env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen[bytes]:
    """Start a `fervi` subcommand as a child in its own session (a terminal's Ctrl-C reaches only its
    supervisor, which then stops children once) that gets SIGTERM when its parent dies."""
    return subprocess.Popen(fervi_command(*args), env=env, start_new_session=True, preexec_fn=die_with_parent, **popen)


def stop_processes(
    procs: list[subprocess.Popen[bytes]],
    grace_s: float = 20.0,
    on_kill: Callable[[subprocess.Popen[bytes]], object] | None = None,
) -> int:
    """SIGTERM to every running child (a warm shutdown), SIGKILL to those still running after `grace_s`
    in all. `on_kill(proc)` runs before each kill. Returns how many were running."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in running:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            if on_kill:
                on_kill(proc)
            proc.kill()
            proc.wait()
    return len(running)
