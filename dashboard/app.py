"""The dashboard: a Flask app factory with Socket.IO on the Redis message queue.

Pages: live wall (`/`), browser camera (`/webcam`), acting challenge (`/challenge`), charts (`/charts`),
image mode (`/image`). Ops: `/healthz` (open) and `/metrics`. With `FERVI_DASHBOARD_TOKEN` set, every
other route and the Socket.IO connection need `?token=...` (or the cookie set by the first visit).
"""

from __future__ import annotations

import hmac
import logging
import time
from pathlib import Path

import redis
from flask import Flask, abort, jsonify, make_response, render_template, request
from flask_socketio import SocketIO
from werkzeug.middleware.proxy_fix import ProxyFix
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from fervi import aggregates
from fervi.bus import Bus, connect, process_id
from fervi.emotions import EMOTIONS
from fervi.protocol import ProtocolError, check_camera, is_browser_camera
from fervi.settings import Settings, describe_duration

from .image_mode import MAX_UPLOAD_BYTES, UploadError, analyse_upload, check_upload
from .pipeline_metrics import PipelineCollector
from .relay import Relay
from .sockets import WEB_FRAME_MAX_BYTES, register_sockets
from .videos import MAX_VIDEO_BYTES, register_videos

log = logging.getLogger(__name__)

MAX_SERIES_POINTS = 10080  # a week of minutes, or 2.8 hours of seconds, per chart query
UPLOADS = Counter("fervi_dashboard_uploads_total", "Images analysed in image mode", ["outcome"])


def create_app(settings: Settings, redis_url: str, token: str = "", start_relay: bool = True):
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_VIDEO_BYTES
    client = connect(redis_url)
    bus = Bus(client)
    socketio = SocketIO(app, message_queue=redis_url, async_mode="threading",
                        # a frame at the size limit still arrives to be refused with a reason, over
                        # long-polling too (base64: 4/3 the bytes)
                        max_http_buffer_size=WEB_FRAME_MAX_BYTES * 4 // 3 + 64 * 1024, cors_allowed_origins=[])
    if settings.dashboard_proxies:  # client addresses (per-address limits) from the trusted proxies' headers;
        # outside the Socket.IO middleware, so its events see them too
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.dashboard_proxies, x_proto=settings.dashboard_proxies)

    def authorized() -> bool:
        if not token:
            return True
        given = request.args.get("token") or request.cookies.get("fervi_token") or \
            request.headers.get("Authorization", "").removeprefix("Bearer ")
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

    def page(name: str):
        return render_template(f"{name}.html", emotions=EMOTIONS, page=name,
                               retention=describe_duration(settings.video_retention_s))

    for name, rule in (("wall", "/"), ("webcam", "/webcam"), ("challenge", "/challenge"), ("charts", "/charts"),
                       ("image", "/image"), ("videos", "/videos")):
        app.add_url_rule(rule, name, lambda name=name: page(name))

    @app.get("/healthz")
    def healthz():
        try:
            client.ping()
        except redis.RedisError as err:
            return jsonify(ok=False, error=str(err)), 503
        if start_relay:  # a component this process owns
            ok, error = relay.health()
            if not ok:
                return jsonify(ok=False, error=error), 503
        return jsonify(ok=True)

    pipeline_registry = CollectorRegistry()
    pipeline_registry.register(PipelineCollector(client))

    @app.get("/metrics")
    def metrics():
        response = make_response(generate_latest() + generate_latest(pipeline_registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    @app.get("/api/cameras")
    def cameras():
        return jsonify(relay.camera_list())

    def _camera(name: str) -> str:
        try:
            camera = check_camera(name)
        except ProtocolError as err:
            abort(make_response(jsonify(error=str(err)), 400))
        if is_browser_camera(camera) and not bus.is_shared_webcam(camera):
            abort(make_response(jsonify(error=f"{camera} is a browser camera its user is not sharing"), 404))
        return camera

    @app.get("/api/series/<camera>")
    def series(camera: str):
        resolution = request.args.get("resolution", "1s")
        if resolution not in aggregates.RESOLUTIONS:
            return jsonify(error=f"resolution must be one of {list(aggregates.RESOLUTIONS)}"), 400
        try:
            seconds = float(request.args.get("seconds", 300))
        except ValueError:
            return jsonify(error="seconds must be a number"), 400
        step = aggregates.RESOLUTIONS[resolution][0]
        if not 0 < seconds <= MAX_SERIES_POINTS * step:
            return jsonify(error=f"seconds must be within 0..{MAX_SERIES_POINTS * step} at resolution "
                                 f"{resolution} (at most {MAX_SERIES_POINTS} points; use a coarser resolution)"), 400
        now = time.time()
        camera = _camera(camera)
        return jsonify(series=aggregates.emotion_series(client, camera, resolution, now - seconds, now),
                       totals=aggregates.emotion_totals(client, camera, resolution, now - seconds, now),
                       tracks=aggregates.tracks(client, camera, now - seconds, 50),
                       active=aggregates.active_faces(client, camera))

    @app.get("/api/leaderboard")
    def leaderboard():
        return jsonify(bus.leaderboard(10))

    @app.post("/api/image")
    def image_upload():
        if (request.content_length or 0) > MAX_UPLOAD_BYTES + 64 * 1024:
            return jsonify(error=f"image larger than {MAX_UPLOAD_BYTES} bytes"), 413
        upload = request.files.get("image")
        if upload is None:
            return jsonify(error="send the image as multipart field 'image'"), 400
        data = upload.read()
        try:
            width, height = check_upload(data, upload.mimetype or "", settings.max_frame_pixels)
            result = analyse_upload(bus, data, width, height)
        except UploadError as err:
            UPLOADS.labels("refused").inc()
            return jsonify(error=str(err)), 400
        UPLOADS.labels("ok").inc()
        return jsonify(width=result.width, height=result.height, faces=result.faces.to_list(), emotions=EMOTIONS)

    videos = register_videos(app, client, Path(settings.home).resolve(), settings.video_retention_s)

    @app.errorhandler(413)
    def too_large(_err):
        return jsonify(error="upload too large"), 413

    register_sockets(socketio, bus, settings, authorized, token)

    relay = Relay(socketio, connect(redis_url, socket_timeout=10), process_id("dashboard"), settings.block_ms,
                  settings.web_idle_s, settings.heartbeat_ttl_s)
    if start_relay:
        socketio.start_background_task(relay.run)
        socketio.start_background_task(videos.janitor, lambda: relay.running)
    app.extensions["fervi_relay"] = relay
    app.extensions["fervi_videos"] = videos
    return app, socketio


LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ExposureError(ValueError):
    """The dashboard would be reachable from other machines with no token."""


def check_exposure(host: str, token: str) -> None:
    if host not in LOOPBACK and not host.startswith("127.") and not token:
        raise ExposureError(
            f"refusing to serve the dashboard on {host} without a token: anyone who reaches this machine could "
            "watch every camera and upload files. Set FERVI_DASHBOARD_TOKEN (e.g. "
            "FERVI_DASHBOARD_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(24))')) or bind 127.0.0.1")


def run_dashboard(settings: Settings, redis_url: str, host: str, port: int, token: str) -> int:
    check_exposure(host, token)
    app, socketio = create_app(settings, redis_url, token)
    log.info("event=dashboard_listening url=http://%s:%d/ token=%s", host, port, "required" if token else "off")
    try:
        socketio.run(app, host=host, port=port, allow_unsafe_werkzeug=True, log_output=False)
    finally:  # SIGTERM arrives as SystemExit: leave the process registry at once
        app.extensions["fervi_relay"].stop()
    return 0
