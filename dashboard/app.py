"""The dashboard: a Flask app factory with Socket.IO on the Redis message queue.

Pages: live wall (`/`), cameras (`/cameras`), browser camera (`/webcam`), acting challenge (`/challenge`),
charts (`/charts`), image mode (`/image`), videos (`/videos`). Ops: `/healthz` (open) and `/metrics`. With
`FERVI_DASHBOARD_TOKEN` set, every other route and the Socket.IO connection need `?token=...` (or the
cookie set by the first visit). The JSON API is in `api.py`, uploaded videos in `videos.py`, Socket.IO
events in `sockets.py`, the Cameras page's API in `cameras.py`, and the live relay from Redis to the
browsers in `relay.py`.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

from flask import Flask, abort, jsonify, make_response, render_template, request
from flask_socketio import SocketIO
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from werkzeug.middleware.proxy_fix import ProxyFix

from fervi.bus import Bus, RedisError, connect, node_url, process_id
from fervi.emotions import EMOTIONS
from fervi.settings import Settings, describe_duration
from fervi.vision.images import size_text

from .api import register_api
from .cameras import register_cameras
from .connections import install_gate
from .guard import install_guard
from .pipeline_metrics import PipelineCollector
from .relay import Relay
from .sockets import WEB_FRAME_MAX_BYTES, register_sockets
from .videos import MAX_VIDEO_BYTES, register_videos

log = logging.getLogger(__name__)

PAGES = (
    ("wall", "/"),
    ("cameras", "/cameras"),
    ("webcam", "/webcam"),
    ("challenge", "/challenge"),
    ("charts", "/charts"),
    ("image", "/image"),
    ("videos", "/videos"),
)


def require_token(app: Flask, token: str, host: str = "127.0.0.1"):
    """Every route but /healthz needs the token (query, cookie or bearer header); returns the check, which
    the Socket.IO connection uses too. Without a token the dashboard listens on loopback only, and answers
    only requests addressed to a loopback name (or to FERVI_DASHBOARD_HOST): a web page on a name that
    resolves to 127.0.0.1 (DNS rebinding) gets a 401, not the cameras."""
    names = {*LOOPBACK, host.lower()}

    def authorized() -> bool:
        if not token:
            return _host_name(request.host).lower() in names
        given = (
            request.args.get("token")
            or request.cookies.get("fervi_token")
            or request.headers.get("Authorization", "").removeprefix("Bearer ")
        )
        # bytes: compare_digest refuses str with non-ASCII characters (a 500 instead of a 401)
        return hmac.compare_digest((given or "").encode(), token.encode())

    @app.before_request
    def guard():
        if request.path != "/healthz" and not authorized():
            abort(401)

    @app.after_request
    def remember_token(response):
        if token and request.args.get("token") == token:
            response.set_cookie("fervi_token", token, httponly=True, samesite="Strict")
        return response

    return authorized


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _host_name(host: str) -> str:
    """`127.0.0.1:8000` -> `127.0.0.1`, `[::1]:8000` -> `::1`."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def register_pages(app: Flask, settings: Settings) -> None:
    def page(name: str):
        return render_template(
            f"{name}.html", emotions=EMOTIONS, page=name, retention=describe_duration(settings.video_retention_s)
        )

    for name, rule in PAGES:
        app.add_url_rule(rule, name, lambda name=name: page(name))


def register_ops(app: Flask, bus: Bus, relay: Relay, relay_running: bool) -> None:
    """/healthz: Redis answers and (where this process relays) the relay runs; /metrics: this process's
    metrics and the pipeline's counters read from Redis."""

    @app.get("/healthz")
    def healthz():
        try:
            bus.ping()
        except RedisError as err:
            return jsonify(ok=False, error=str(err)), 503
        if relay_running:  # a component this process owns
            ok, error = relay.health()
            if not ok:
                return jsonify(ok=False, error=error), 503
        return jsonify(ok=True)

    pipeline_registry = CollectorRegistry()
    pipeline_registry.register(PipelineCollector(bus))

    @app.get("/metrics")
    def metrics():
        response = make_response(generate_latest() + generate_latest(pipeline_registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response


def create_app(
    settings: Settings, redis_url: str, token: str = "", start_relay: bool = True, async_mode: str = "threading"
):
    """The dashboard app and its SocketIO; `async_mode` "gevent" under the server's gevent worker (`server.py`),
    "threading" where the app runs in an ordinary process (tests, Flask's own server)."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_VIDEO_BYTES
    bus = Bus(connect(redis_url), jobs=connect(settings.rq_redis_url) if settings.rq_redis_url else None)
    # Socket.IO's queue is Pub/Sub, which reaches a whole Redis Cluster from any of its nodes
    socketio = SocketIO(
        app,
        message_queue=node_url(redis_url),
        async_mode=async_mode,
        # a frame at the size limit still arrives to be refused with a reason, over
        # long-polling too (base64: 4/3 the bytes)
        max_http_buffer_size=WEB_FRAME_MAX_BYTES * 4 // 3 + 64 * 1024,
    )  # same origin only
    authorized = require_token(app, token, settings.dashboard_host)
    # the token and the per-address cap of Socket.IO sessions, checked before Engine.IO opens a session
    install_gate(app, socketio, authorized, token)
    if settings.dashboard_proxies:  # client addresses (per-address limits) from the trusted proxies' headers;
        # outside the Socket.IO middleware, so its events see them too
        # Flask's documented way to add WSGI middleware (`Flask.wsgi_app`); mypy refuses any assignment to a method
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.dashboard_proxies, x_proto=settings.dashboard_proxies
        )
    relay = Relay(
        socketio,
        Bus(connect(redis_url, socket_timeout=10)),
        process_id("dashboard"),
        settings.block_ms,
        settings.web_idle_s,
        settings.heartbeat_ttl_s,
    )
    register_pages(app, settings)
    register_ops(app, bus, relay, start_relay)
    register_api(app, bus, settings, relay)
    register_cameras(app, bus, settings)
    videos = register_videos(app, bus, Path(settings.home).resolve(), settings.video_retention_s)

    @app.errorhandler(413)
    def too_large(_err):
        return jsonify(error=f"the upload is larger than the limit of {size_text(MAX_VIDEO_BYTES)}"), 413

    install_guard(app)  # after the handler above: each route's 413 says its own limit

    register_sockets(socketio, bus, settings, authorized, token)
    if start_relay:
        socketio.start_background_task(relay.run)
        socketio.start_background_task(videos.janitor, lambda: relay.running)
    app.extensions["fervi_relay"] = relay
    app.extensions["fervi_videos"] = videos
    return app, socketio


class ExposureError(ValueError):
    """The dashboard would be reachable from other machines with no token."""


TOKEN_MIN_CHARS = 16  # a token that guards a dashboard reachable from other machines: guessing must not pay


def check_exposure(host: str, token: str) -> None:
    exposed = host not in LOOPBACK and not host.startswith("127.")
    if exposed and token and (len(token.strip()) < TOKEN_MIN_CHARS or token != token.strip()):
        raise ExposureError(
            f"refusing to serve the dashboard on {host} with a weak FERVI_DASHBOARD_TOKEN: use at least "
            f"{TOKEN_MIN_CHARS} characters, no spaces around them (e.g. "
            "FERVI_DASHBOARD_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(24))'))"
        )
    if exposed and not token:
        raise ExposureError(
            f"refusing to serve the dashboard on {host} without a token: anyone who reaches this machine could "
            "watch every camera and upload files. Set FERVI_DASHBOARD_TOKEN (e.g. "
            "FERVI_DASHBOARD_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(24))')) or bind 127.0.0.1"
        )


def run_dashboard(settings: Settings, redis_url: str, host: str, port: int, token: str) -> int:
    """Serve the dashboard on Gunicorn (`server.py`) until SIGTERM."""
    from .connections import CONNECTIONS_PER_ADDRESS
    from .server import serve

    check_exposure(host, token)
    log.info(
        "event=dashboard_listening url=http://%s:%d/ token=%s server=gunicorn",
        host,
        port,
        "required" if token else "off",
    )
    # behind trusted proxies every connection comes from them: the sessions' cap (per forwarded address) holds
    per_address = 0 if settings.dashboard_proxies else CONNECTIONS_PER_ADDRESS
    serve(lambda: create_app(settings, redis_url, token, async_mode="gevent")[0], host, port, per_address)
    return 0
