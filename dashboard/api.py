"""The dashboard's JSON API: cameras on the wall, chart series, the leaderboard, and image mode."""

from __future__ import annotations

import time

from flask import Flask, abort, jsonify, make_response, request

from fervi.bus import RESOLUTIONS, Bus
from fervi.emotions import EMOTIONS
from fervi.metrics import UPLOADS
from fervi.protocol import IMAGE_CAMERA_PREFIX, ProtocolError, check_camera, is_browser_camera
from fervi.settings import Settings
from fervi.vision.images import size_text

from .guard import MULTIPART_SLACK, body_limit
from .image_mode import MAX_UPLOAD_BYTES, NoWorker, UploadError, analyse_upload, check_upload
from .relay import Relay

MAX_SERIES_POINTS = 10080  # a week of minutes, or 2.8 hours of seconds, per chart query


def register_api(app: Flask, bus: Bus, settings: Settings, relay: Relay) -> None:
    """The JSON API, one registrar per feature."""
    register_camera_lists(app, bus, relay)
    register_charts(app, bus)
    register_leaderboards(app, bus)
    register_image_mode(app, bus, settings)


def register_camera_lists(app: Flask, bus: Bus, relay: Relay) -> None:
    """The cameras on the wall, and those that can be charted."""

    @app.get("/api/cameras")
    def live_cameras():
        return jsonify(relay.camera_list())

    @app.get("/api/cameras/history")
    def cameras_with_history():
        """Every camera that can be charted, live or ended (not image-mode ones, nor browser cameras their
        users do not share), with the time of its newest tracked frame (0: none yet)."""
        cameras = bus.cameras()  # read and type-checked once, for the live list too
        live = {c["camera"] for c in relay.camera_list(cameras) if not c["stalled"]}  # a quiet one has ended
        private = set(bus.webcams()) - bus.shared_webcams()
        titles = bus.webcam_titles()
        return jsonify(
            [
                {"camera": c, "title": titles.get(c, c), "live": c in live, "last_frame_at": bus.last_frame_at(c)}
                for c in cameras
                if not c.startswith(IMAGE_CAMERA_PREFIX) and c not in private
            ]
        )


def chartable_camera(bus: Bus, name: str) -> str:
    """A camera's name, checked; a 400 for a name no camera can have, a 404 for a browser camera its user is
    not sharing."""
    try:
        camera = check_camera(name)
    except ProtocolError as err:
        abort(make_response(jsonify(error=str(err)), 400))
    if is_browser_camera(camera) and not bus.is_shared_webcam(camera):
        abort(make_response(jsonify(error=f"{camera} is a browser camera its user is not sharing"), 404))
    return camera


def register_charts(app: Flask, bus: Bus) -> None:
    """A camera's emotion series, totals and tracks over a time window, and one track's timeline."""

    @app.get("/api/series/<camera>")
    def series(camera: str):
        resolution = request.args.get("resolution", "1s")
        if resolution not in RESOLUTIONS:
            return jsonify(error=f"resolution must be one of {list(RESOLUTIONS)}"), 400
        try:
            seconds = float(request.args.get("seconds", 300))
        except ValueError:
            return jsonify(error="seconds must be a number"), 400
        step = RESOLUTIONS[resolution][0]
        if not 0 < seconds <= MAX_SERIES_POINTS * step:
            return jsonify(
                error=f"seconds must be within 0..{MAX_SERIES_POINTS * step} at resolution "
                f"{resolution} (at most {MAX_SERIES_POINTS} points; use a coarser resolution)"
            ), 400
        now = time.time()
        camera = chartable_camera(bus, camera)
        return jsonify(
            series=bus.emotion_series(camera, resolution, now - seconds, now),
            totals=bus.emotion_totals(camera, resolution, now - seconds, now),
            tracks=bus.tracks(camera, now - seconds, 50),  # the newest 50
            track_count=bus.track_count(camera, now - seconds),  # and how many there were
            active=bus.active_faces(camera),
        )

    @app.get("/api/tracks/<camera>/<int:track_id>")
    def track_timeline(camera: str, track_id: int):
        """One face track: its record and its smoothed probabilities over time (while the tracks stream
        still holds its frames)."""
        camera = chartable_camera(bus, camera)
        track = bus.track(camera, track_id)
        if track is None:
            return jsonify(error=f"no track #{track_id} on {camera} (tracks are kept 7 days)"), 404
        return jsonify(
            track=track, emotions=EMOTIONS, points=bus.track_timeline(camera, track_id, track["start"], track["end"])
        )


def register_leaderboards(app: Flask, bus: Bus) -> None:
    """The acting challenge's leaderboard and best games."""

    @app.get("/api/leaderboard")
    def leaderboard():
        return jsonify(bus.leaderboard(10))

    @app.get("/api/games")
    def games():
        """The acting challenge's best games: each name's best score over a game, and when."""
        return jsonify(bus.best_games(10))


def register_image_mode(app: Flask, bus: Bus, settings: Settings) -> None:
    """Image mode: one uploaded image analysed at once."""

    @app.post("/api/image")
    @body_limit(MAX_UPLOAD_BYTES + MULTIPART_SLACK, f"an image is at most {size_text(MAX_UPLOAD_BYTES)}")
    def image_upload():
        upload = request.files.get("image")
        if upload is None:
            return jsonify(error="send the image as multipart field 'image'"), 400
        data = upload.read()
        try:
            width, height = check_upload(data, upload.mimetype or "", settings.max_frame_pixels)
            result = analyse_upload(bus, data, width, height)
        except UploadError as err:
            UPLOADS.labels("refused").inc()
            return jsonify(error=str(err)), 503 if isinstance(err, NoWorker) else 400
        UPLOADS.labels("ok").inc()
        return jsonify(width=result.width, height=result.height, faces=result.faces.to_list(), emotions=EMOTIONS)
