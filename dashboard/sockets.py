"""The dashboard's Socket.IO events: watching cameras, the browser camera, sharing it, challenge rounds.

A browser camera exists while its client sends frames: it is admitted on its first frame (within
`FERVI_WEB_CAMERAS_MAX` and `FERVI_WEB_CAMERAS_PER_ADDRESS`), leaves when the client disconnects or after
`FERVI_WEB_IDLE` seconds without a frame (the relay sweeps), and its streams are deleted shortly after.
It is private to its client unless the user shares it to the live wall. Frames are limited per connection
(`WEB_FPS`) and per client address; connections per address per minute are limited too, so reconnecting
does not reset a limit.
"""

from __future__ import annotations

import hmac
import logging
import time

from flask import request
from flask_socketio import ConnectionRefusedError, SocketIO, join_room, leave_room

from fervi.bus import Bus
from fervi.metrics import FRAMES_INGESTED, WEB_CAMERAS, WEB_CONNECTIONS, WEB_FRAMES
from fervi.protocol import Frame, ProtocolError, check_camera, is_browser_camera, metric_camera
from fervi.settings import Settings
from fervi.vision.images import ImageError, image_size

from . import challenge
from .limits import AddressLimits, TokenBucket
from .relay import WALL_ROOM

log = logging.getLogger(__name__)

WEB_FRAME_MAX_BYTES = 512 * 1024
SHOWN_WINDOW_S = 600  # a round on another camera draws its target from the emotions shown in this window
WEB_FPS = 8.0


def client_address() -> str:
    return request.remote_addr or "unknown"


def register_sockets(socketio: SocketIO, bus: Bus, settings: Settings, authorized, token: str) -> None:
    connections = AddressLimits(settings.web_connects_per_minute / 60.0, settings.web_connects_per_minute)
    address_frames = AddressLimits(WEB_FPS * settings.web_cameras_per_address, WEB_FPS * settings.web_cameras_per_address)
    frame_buckets: dict[str, TokenBucket] = {}
    own: dict[str, str] = {}  # sid -> its browser camera, once admitted

    def camera_of(sid: str) -> str:
        return f"web-{sid[:12].replace('_', '-')}"

    def visible(camera: str) -> bool:
        """A browser camera to its own client, and to others only while live and shared; every other camera."""
        return not is_browser_camera(camera) or camera == own.get(request.sid) or bus.is_shared_webcam(camera)

    def refusal(camera) -> str:
        """Why this client may not watch `camera` ("" when it may)."""
        try:
            check_camera(camera)
        except ProtocolError as err:
            return str(err)
        return "" if visible(camera) else f"{camera} is a browser camera its user has not shared"

    def join_camera(camera: str) -> None:
        if camera != own.get(request.sid):  # a client gets its own camera in its private room
            join_room(camera)

    def stop_watchers(camera: str) -> None:
        """Take every client out of a browser camera's room (it stopped being shared, or its client left).
        Its own client is never in that room: the relay sends it its camera through its private room."""
        socketio.close_room(camera)

    @socketio.on("connect")
    def on_connect(auth=None):
        given = (auth or {}).get("token") if isinstance(auth, dict) else None
        # no token: `authorized` checks the Host (loopback names only); a token: the cookie, or the one sent here
        if not (authorized() or token and hmac.compare_digest(str(given or "").encode(), token.encode())):
            WEB_CONNECTIONS.labels("unauthorized").inc()
            return False
        if not connections.take(client_address()):
            WEB_CONNECTIONS.labels("rate_limited").inc()
            raise ConnectionRefusedError(f"too many connections from {client_address()}: at most "
                                         f"{settings.web_connects_per_minute} a minute")
        WEB_CONNECTIONS.labels("ok").inc()
        frame_buckets[request.sid] = TokenBucket(WEB_FPS, WEB_FPS)
        return True

    def leave(reason: str) -> bool:
        """The client's browser camera stops being a camera now (its keys go after a grace period)."""
        camera = own.pop(request.sid, None)
        if camera:
            bus.leave_webcam(camera)
            stop_watchers(camera)
            WEB_CAMERAS.set(len(own))
            log.info("event=webcam_left camera=%s reason=%s", camera, reason)
        return camera is not None

    @socketio.on("disconnect")
    def on_disconnect(*_args):
        frame_buckets.pop(request.sid, None)
        bus.drop_round(request.sid)
        leave("disconnected")

    @socketio.on("webcam_stop")
    def on_webcam_stop(_data=None):
        """The user pressed Stop: the camera leaves at once, not after FERVI_WEB_IDLE."""
        return {"ok": True, "stopped": leave("stopped")}

    @socketio.on("watch")
    def on_watch(data=None):
        data = data if isinstance(data, dict) else {}
        camera = data.get("camera", "")
        for room in data.get("leave", []) if isinstance(data.get("leave"), list) else []:
            leave_room(str(room))
        if camera == WALL_ROOM:
            join_room(WALL_ROOM)
            return {"ok": True}
        error = refusal(camera)
        if error:
            return {"ok": False, "error": error}
        join_camera(camera)
        return {"ok": True}

    @socketio.on("webcam")
    def on_webcam(data=None):
        """A JPEG from the browser's camera, into this browser's own camera stream."""
        camera = camera_of(request.sid)
        jpeg = data.get("jpeg") if isinstance(data, dict) else None
        if not isinstance(jpeg, (bytes, bytearray)) or not jpeg:
            WEB_FRAMES.labels("bad").inc()
            return {"ok": False, "error": "send {jpeg: <bytes>}"}
        if len(jpeg) > WEB_FRAME_MAX_BYTES:
            WEB_FRAMES.labels("too_large").inc()
            return {"ok": False, "error": f"frame larger than {WEB_FRAME_MAX_BYTES} bytes"}
        if not (frame_buckets.setdefault(request.sid, TokenBucket(WEB_FPS, WEB_FPS)).take()
                and address_frames.take(client_address())):
            WEB_FRAMES.labels("rate_limited").inc()
            return {"ok": False, "camera": camera, "slow_down": True}
        try:  # the header alone: the size the frame claims, checked before any worker decodes it
            width, height = image_size(bytes(jpeg))
        except ImageError as err:
            WEB_FRAMES.labels("bad").inc()
            return {"ok": False, "error": str(err)}
        if width * height > settings.max_frame_pixels:
            WEB_FRAMES.labels("too_large").inc()
            return {"ok": False, "error": f"frame of {width}x{height} pixels is over the limit of "
                                          f"{settings.max_frame_pixels} (FERVI_MAX_FRAME_PIXELS)"}
        admitted = bus.admit_webcam(camera, client_address(), settings.web_cameras_max,
                                    settings.web_cameras_per_address, request.sid)
        if admitted < 0:
            WEB_FRAMES.labels("refused").inc()
            limit = (f"{settings.web_cameras_max} browser cameras are live, the most this FERVI takes"
                     if admitted == -1 else
                     f"{settings.web_cameras_per_address} browser cameras are live from your address, the most it may have")
            return {"ok": False, "full": True, "error": f"{limit}: try again later"}
        if admitted == 2:
            own[request.sid] = camera
            WEB_CAMERAS.set(len(own))
            log.info("event=webcam_admitted camera=%s address=%s", camera, client_address())
        bus.add_frame(Frame(camera, time.time(), width, height, bytes(jpeg), live=True), settings.live_maxlen)
        FRAMES_INGESTED.labels(metric_camera(camera)).inc()
        WEB_FRAMES.labels("ok").inc()
        return {"ok": True, "camera": camera}

    @socketio.on("share")
    def on_share(data=None):
        """Show this browser's camera on the shared live wall, or stop showing it."""
        camera = own.get(request.sid)
        shared = bool(data.get("on")) if isinstance(data, dict) else False
        if camera is None or not bus.share_webcam(camera, shared):
            return {"ok": False, "error": "start your camera first"}
        if not shared:
            stop_watchers(camera)
        log.info("event=webcam_shared camera=%s shared=%s", camera, shared)
        return {"ok": True, "camera": camera, "shared": shared}

    @socketio.on("challenge_start")
    def on_challenge_start(data=None):
        """Start this player's next round; the relay decides it from the tracker's results."""
        asked = data if isinstance(data, dict) else {}
        camera = asked.get("camera") or own.get(request.sid)
        if not camera:
            return {"ok": False, "error": "start your camera first"}
        error = refusal(camera)
        if error:
            return {"ok": False, "error": error}
        own_camera = camera == own.get(request.sid)
        if not own_camera and camera not in bus.cameras():
            return {"ok": False, "error": f"there is no camera called {camera!r}: see the Cameras page for the names"}
        targets = settings.challenge_target_list
        if not own_camera:  # a live camera cannot act on request: draw from what its faces showed lately
            now = time.time()
            targets = challenge.shown_targets(bus.emotion_totals(camera, "1m", now - SHOWN_WINDOW_S, now), targets)
        try:
            record = challenge.new_round(request.sid, camera, own_camera, asked, targets, bus.load_round(request.sid))
        except challenge.ChallengeError as err:
            return {"ok": False, "error": str(err)}
        bus.save_round(request.sid, record)
        join_camera(camera)
        return {"ok": True, **challenge.progress(record)}
