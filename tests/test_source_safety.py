"""What an attacker tried against cameras and videos (a review of the Cameras feature), each now refused:
local playlists and text files read as "videos", symlinks out of the allowed folders, malformed or secret-
bearing URLs, a stream password in the process list, foreign web pages (Host, Origin), and loose inputs."""

from __future__ import annotations

import io
import json
import os
import time

import pytest
from fervi.dashboard.app import create_app
from fervi.ingest.sources import SourceError, open_source
from fervi.offline.video_io import VideoError, probe

from fervi.demo import write_video
from fervi.protocol import CameraSource, ProtocolError, check_camera, check_source
from fervi.settings import load_settings, mask_password
from fervi.vision.video import open_file


@pytest.fixture
def outside(tmp_path):
    """A video and an image outside the allowed folder, and the allowed folder itself."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "allowed").mkdir()
    video = write_video(tmp_path / "outside" / "secret.avi", frames=5, fps=5)
    return {"video": video, "allowed": tmp_path / "allowed", "tmp": tmp_path}


def test_a_local_playlist_or_text_file_is_no_video(outside):
    """FFmpeg would read an HLS playlist naming any file, and show text files as frames (its tty reader)."""
    playlist = outside["allowed"] / "q.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:4.0,\n{outside['video']}\n")
    text = outside["allowed"] / "key.asc"
    text.write_text("-----BEGIN PGP PRIVATE KEY BLOCK-----\nsecret\n")
    for path in (playlist, text):
        capture = open_file(str(path))
        assert not (capture.isOpened() and capture.read()[0]), path
        with pytest.raises(VideoError):
            probe(path)
        with pytest.raises(SourceError):
            open_source(str(path)).frames().__next__()
    assert open_file(str(outside["video"])).read()[0]  # a real video still plays


def test_an_uploaded_playlist_is_refused(outside, redis_url):
    playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:4.0,\n{outside['video']}\n".encode()
    app, _ = create_app(load_settings({"FERVI_HOME": str(outside["tmp"] / "home")}), redis_url, start_relay=False)
    reply = app.test_client().post(
        "/api/videos", data={"video": (io.BytesIO(playlist), "q2.m3u8")}, content_type="multipart/form-data"
    )
    assert reply.status_code == 400, reply.get_json()


def test_a_file_camera_stays_inside_its_folders_at_every_open(outside):
    allowed = str(outside["allowed"])
    (outside["allowed"] / "link.avi").symlink_to(outside["video"])
    with pytest.raises(SourceError, match="outside the folders"):
        open_source(str(outside["allowed"] / "link.avi"), within=[allowed])
    import cv2
    import numpy as np

    album = outside["allowed"] / "album"
    album.mkdir()
    cv2.imwrite(str(album / "a.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(outside["tmp"] / "outside" / "secret.png"), np.zeros((8, 8, 3), np.uint8))
    (album / "b.png").symlink_to(outside["tmp"] / "outside" / "secret.png")  # added after the camera, say
    frames = list(open_source(str(album), within=[allowed]).frames())
    assert [f.image is not None for f in frames] == [True, False]
    assert "outside the folders" in frames[1].error


@pytest.mark.parametrize("url", ["rtsp://u:p@h:abc/", "https://[::1", "rtsp://u:p@[zz/", "rtsp:///nohost"])
def test_a_url_that_does_not_parse_is_refused_and_never_breaks_masking(url):
    with pytest.raises(ProtocolError):
        check_source(url)
    assert "p@" not in mask_password(url) or url.startswith("rtsp:///")


def test_secrets_in_urls_are_masked():
    assert mask_password("rtsp://admin:hunter2@cam/1") == "rtsp://admin:***@cam/1"
    masked = mask_password("http://cam/video.mjpg?user=admin&password=hunter5&res=hd")
    assert "hunter5" not in masked and "res=hd" in masked and "user=admin" in masked
    assert "abc" not in mask_password("https://cam/live?token=abc")


def test_loose_inputs_are_refused():
    with pytest.raises(ProtocolError):
        check_camera("x\n")  # `$` would match before a trailing newline
    with pytest.raises(ProtocolError, match="fps"):
        CameraSource("door", "0", fps=0.05)
    with pytest.raises(ProtocolError, match="true or false"):
        CameraSource("door", "0", loop="false")
    with pytest.raises(ProtocolError):
        CameraSource.from_json(json.dumps({"camera": "door", "source": "0", "loop": "no"}))


@pytest.fixture
def open_dashboard(outside, redis_url):
    settings = load_settings(
        {"FERVI_HOME": str(outside["tmp"] / "home"), "FERVI_CAMERA_FILE_ROOTS": str(outside["allowed"])}
    )
    app, socketio = create_app(settings, redis_url, start_relay=False)
    return app.test_client(), socketio, app


def test_without_a_token_only_loopback_names_are_answered(open_dashboard):
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 must not drive the dashboard."""
    http, _socketio, _app = open_dashboard
    assert http.get("/api/sources").status_code == 200
    assert http.get("/api/sources", headers={"Host": "localhost:8000"}).status_code == 200
    assert http.get("/api/sources", headers={"Host": "LOCALHOST:8000"}).status_code == 200
    evil = {"Host": "evil.example:8000"}
    assert http.get("/api/sources", headers=evil).status_code == 401
    assert http.post("/api/sources", json={"camera": "cam", "source": "0"}, headers=evil).status_code == 401
    assert _socket_connect(http, evil).startswith("44")  # Socket.IO's connect refused
    assert _socket_connect(http, {"Origin": "http://evil.example"}) == "handshake 400"  # same origin only
    assert _socket_connect(http, {"Host": "localhost", "Origin": "http://localhost"}).startswith("40")


def _socket_connect(http, headers: dict) -> str:
    """An Engine.IO long-polling handshake and a Socket.IO CONNECT, through the app's WSGI stack: the
    server's answer to the CONNECT (`40...` accepted, `44...` refused), or why the handshake failed."""
    opened = http.get("/socket.io/?EIO=4&transport=polling", headers=headers)
    if opened.status_code != 200:
        return f"handshake {opened.status_code}"
    sid = json.loads(opened.get_data(as_text=True)[1:])["sid"]
    url = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
    http.post(url, data="40", headers=headers, content_type="text/plain")
    return http.get(url, headers=headers).get_data(as_text=True)


def test_the_cameras_api_refuses_loose_or_dangerous_input(open_dashboard, outside, client):
    http, _, _ = open_dashboard
    os.mkfifo(outside["allowed"] / "fifo.mp4")
    cases = [
        ({"camera": "a", "source": "0", "fps": "5"}, 400, "fps must be a number"),
        ({"camera": "a", "source": "0", "loop": "false"}, 400, "loop must be"),
        ({"camera": "a", "source": "0", "fps": 10**400}, 400, ""),
        ({"camera": "a", "source": str(outside["allowed"] / "fifo.mp4")}, 400, "not a regular file"),
        ({"camera": "a", "source": "rtsp://u:p@h:abc/"}, 400, "not a valid URL"),
        ({"camera": "a", "source": "abc", "kind": "webcam"}, 400, "its number: 0 for the first one"),
        ({"camera": "a", "source": "hello", "kind": "stream"}, 400, "a stream is a URL"),
        ({"camera": "a", "source": "clip.mp4", "kind": "file"}, 400, "absolute path"),
    ]
    for body, status, message in cases:
        reply = http.post(
            "/api/sources", data=json.dumps(body).replace("1" + "0" * 400, "1e400"), content_type="application/json"
        )
        assert reply.status_code == status and message in reply.get_json()["error"], (body, reply.get_json())
    huge = http.post("/api/sources", data=b"{" + b" " * 100_000 + b"}", content_type="application/json")
    assert huge.status_code == 413
    chunked = http.post(
        "/api/sources",
        input_stream=io.BytesIO(b"{" + b" " * 100_000 + b"}"),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )  # no declared length
    assert chunked.status_code == 413
    client.hset("fervi:proc:ingest-manual-x-1", mapping={"kind": "ingest", "camera": "manual"})
    taken = http.post("/api/sources", json={"camera": "manual", "source": "0"})
    assert taken.status_code == 409 and "already streams" in taken.get_json()["error"]


def test_a_stream_password_stays_out_of_the_process_list(tmp_path, redis_url, processes):
    from fervi.bus import Bus, connect

    from .conftest import fervi_env, wait_for

    bus = Bus(connect(redis_url))
    processes.start(["cameras", "supervise"], fervi_env(redis_url), "supervisor")
    bus.add_source(CameraSource("gate", "rtsp://admin:hunter2@127.0.0.1:9/live", fps=0.5))
    state = wait_for(
        lambda: (
            bus.source_states(["gate"]).get("gate", {}).get("state") == "reconnecting"
            and bus.source_states(["gate"])["gate"]
        ),
        60,
        "the stream's ingest",
    )
    pid = int(state["pid"].rsplit("-", 1)[1])
    command = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    assert "fervi" in command and "hunter2" not in command and "127.0.0.1:9" not in command
    assert "hunter2" not in json.dumps(state)


def test_a_looped_image_keeps_its_fps(tmp_path):
    """`loop` with `fps` once sent a one-image source as fast as it could (about 190 frames a second)."""
    import cv2
    import numpy as np
    from fervi.ingest.publisher import Publisher
    from fervi.ingest.sources import ImageSource

    cv2.imwrite(str(tmp_path / "still.png"), np.zeros((16, 16, 3), np.uint8))
    sent = []

    class Counting(Publisher):
        def __init__(self):  # no Redis: count what would be published
            self.fps, self.live_override, self.next_at = 5.0, True, 0.0
            self.shutdown = type("S", (), {"requested": False, "wait": staticmethod(time.sleep)})()

        def _publish(self, captured, live):
            sent.append(time.monotonic())
            return False

    publisher = Counting()
    publisher.sent = publisher.dropped = 0
    publisher.camera = "still"
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        publisher._play(ImageSource(tmp_path / "still.png", 10**8, 10**8))
    assert len(sent) <= 7, len(sent)  # 5 a second (and the first at once)
