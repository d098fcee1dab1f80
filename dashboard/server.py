"""The dashboard's web server: Gunicorn with one worker process and a thread per connection (`gthread`), the
setup Flask-SocketIO's deployment guide gives for its threading mode with `simple-websocket` (WebSocket
traffic, no development server). One worker, since Socket.IO needs sticky sessions that Gunicorn's own
balancing does not give: more dashboards scale as more processes, each on its port, behind a proxy with
sticky sessions, all on the Redis message queue.

The app is built in the worker (after the fork), so the relay and the video janitor run there; on SIGTERM
the worker finishes its requests for up to `GRACE_S` and leaves the process registry.
"""

from __future__ import annotations

import logging

from gunicorn.app.base import BaseApplication

from fervi.logs import FORMAT

THREADS = 64  # connections served at once (each open WebSocket holds one thread)
GRACE_S = 10


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


def serve(factory, host: str, port: int, threads: int = THREADS) -> None:
    """Serve the Flask app that `factory()` builds until SIGTERM or SIGINT."""
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": threads,
        "graceful_timeout": GRACE_S,
        "keepalive": 5,
        "accesslog": None,
        "proc_name": "fervi-dashboard",
        "worker_exit": _worker_exit,
        "control_socket_disable": True,  # Gunicorn >= 25.1 would share one control socket per user
        "logconfig_dict": {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"fervi": {"format": FORMAT}},
            "handlers": {
                "stderr": {"class": "logging.StreamHandler", "formatter": "fervi", "stream": "ext://sys.stderr"}
            },
            "root": {"level": level, "handlers": ["stderr"]},
            "loggers": {
                "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
                "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
            },
        },
    }
    DashboardServer(factory, options).run()
