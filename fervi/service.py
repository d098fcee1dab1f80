"""What every long-running FERVI process shares: warm/cold shutdown, a health and metrics endpoint,
a heartbeat in Redis, and reconnecting with capped exponential backoff.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import redis
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)


class Shutdown:
    """First SIGTERM/SIGINT: finish the current batch, then stop (warm). Second: stop now (cold)."""

    def __init__(self, name: str):
        self.name = name
        self.event = threading.Event()

    def install(self) -> "Shutdown":
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
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

    def __init__(self, health: Callable[[], dict], port: int = 0, host: str = "127.0.0.1"):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
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

            def log_message(self, *_args):  # access logs would drown the event log
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
            log.warning("event=reconnecting what=%s attempt=%d retry_in_s=%.1f error=%r",
                        self.what, self.failures, self.delay_s, str(err)[:200])
        if shutdown is not None:
            shutdown.wait(self.delay_s)
        else:
            time.sleep(self.delay_s)

    def succeeded(self) -> None:
        if self.failures:
            log.info("event=reconnected what=%s attempts=%d down_s=%.1f",
                     self.what, self.failures, time.monotonic() - self.down_since)
        self.failures = 0
        self.delay_s = 0.0


REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, ConnectionError, OSError)


def run_redis_loop(step: Callable[[], object], shutdown: Shutdown, on_redis_down=None) -> bool:
    """Call `step` until shutdown; Redis outages back off and are retried. Returns whether Redis was up
    at the last step. `on_redis_down` runs at each failure (to forget state the server may have lost)."""
    backoff = Backoff("redis")
    up = False
    while not shutdown.requested:
        try:
            step()
            up = True
            backoff.succeeded()
        except REDIS_DOWN as err:
            up = False
            if on_redis_down:
                on_redis_down()
            backoff.failed(err, shutdown)
    return up


def serve(process, metrics_port: int | None, settings) -> int:
    """Run a long-running process (`.health()`, `.run()`) with its /healthz and /metrics endpoint."""
    ops = OpsServer(process.health, settings.metrics_port if metrics_port is None else metrics_port,
                    settings.metrics_host)
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
