"""The dashboard's web server: Gunicorn with one gevent worker, where each connection is a greenlet, not an
OS thread, so idle or slow connections cost memory, not the threads that serve everyone else. Flask-SocketIO
runs in its "gevent" mode with `simple-websocket` (python-engineio hands it gevent's classes; the worker
monkey-patches the standard library, so the Redis clients, the Socket.IO message queue and the relay's
background tasks cooperate). One worker, since Socket.IO needs sticky sessions that Gunicorn's own balancing
does not give: more dashboards scale as more processes, each on its port, behind a proxy with sticky
sessions, all on the Redis message queue.

Against clients that hold connections: a request's headers must arrive within `HEADER_TIMEOUT_S` and an
idle keep-alive connection is closed after as long (Gunicorn's async workers read each request under
`keepalive` as a timeout); a directly connected address may hold `CONNECTIONS_PER_ADDRESS` connections
(more are answered 503 and closed at once); Engine.IO sessions are capped per address in `connections.py`.

The app is built in the worker (after the fork and the monkey-patching), so the relay and the video janitor
run there; on SIGTERM the worker finishes its requests for up to `GRACE_S` and leaves the process registry.
"""

from __future__ import annotations

import logging
import resource
import warnings

from gunicorn.app.base import BaseApplication
from gunicorn.workers.ggevent import GeventWorker

from fervi.logs import FORMAT

from .connections import CONNECTIONS_PER_ADDRESS, RETRY_AFTER_S, AddressCount

GRACE_S = 10
HEADER_TIMEOUT_S = 5  # a request's headers, and the wait for the next request on a kept-alive connection
MAX_CONNECTIONS = 10000  # open at once in all (each a greenlet and a file descriptor)
log = logging.getLogger(__name__)


class DashboardWorker(GeventWorker):
    """Gunicorn's gevent worker with a cap on the connections one directly connected address holds open
    (`per_address`; 0: no cap, for a dashboard behind trusted proxies, whose connections all come from them)."""

    per_address = CONNECTIONS_PER_ADDRESS

    def init_process(self) -> None:
        self.connections = AddressCount(self.per_address)
        # `ssl` was imported before the fork (by redis and urllib3, in `fervi`'s imports) and gevent warns on
        # patching it late; the dashboard opens no TLS itself and redis-py reaches `ssl` through the patched
        # module. Patching before any import would need the `fervi dashboard` command to do it first thing.
        warnings.filterwarnings("ignore", message="Monkey-patching ssl after ssl")
        _raise_open_files_limit(MAX_CONNECTIONS + 256)
        super().init_process()

    def handle(self, listener, client, addr) -> None:
        address = addr[0] if isinstance(addr, tuple) else str(addr)
        if not self.per_address:
            super().handle(listener, client, addr)
        elif not self.connections.acquire(address):
            _refuse(client, address)
        else:
            try:
                super().handle(listener, client, addr)
            finally:
                self.connections.release(address)


def _refuse(client, address: str) -> None:
    """503 and close, without reading the request: a flood costs one short write per connection."""
    body = b"too many connections from your address\n"
    try:
        client.settimeout(1)
        client.sendall(
            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n"
            + f"Retry-After: {RETRY_AFTER_S}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
    except OSError:
        pass
    finally:
        client.close()
    log.debug("event=connection_refused address=%s reason=connections_per_address", address)


def _raise_open_files_limit(wanted: int) -> None:
    """Each connection is a file descriptor: a soft limit of 1024 would refuse connections long before the cap."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class DashboardServer(BaseApplication):
    def __init__(self, factory, options: dict):
        self.factory = factory
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self):
        return self.factory()


def _worker_exit(_server, worker) -> None:
    app = getattr(worker, "wsgi", None)
    relay = getattr(app, "extensions", {}).get("fervi_relay") if app is not None else None
    if relay is not None:
        relay.stop()


def serve(factory, host: str, port: int, per_address: int = CONNECTIONS_PER_ADDRESS) -> None:
    """Serve the Flask app that `factory()` builds (with Flask-SocketIO in "gevent" mode) until SIGTERM or
    SIGINT; `per_address`: connections one directly connected address may hold open (0: no cap)."""
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": 1,
        "worker_class": type("DashboardWorker", (DashboardWorker,), {"per_address": per_address}),
        "worker_connections": MAX_CONNECTIONS,
        "graceful_timeout": GRACE_S,
        "keepalive": HEADER_TIMEOUT_S,
        "accesslog": None,
        "proc_name": "fervi-dashboard",
        "worker_exit": _worker_exit,
        "control_socket_disable": True,  # Gunicorn >= 25.1 would share one control socket per user
        "logconfig_dict": _log_config(level),
    }
    DashboardServer(factory, options).run()


def _log_config(level: str) -> dict:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"fervi": {"format": FORMAT}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "fervi", "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
        },
    }
