"""Dashboard server routes without a browser: token, health, metrics, uploads refused with a reason."""

from __future__ import annotations

import io
import time

import pytest
from fervi.dashboard.app import create_app
from fervi.dashboard.limits import TokenBucket

from fervi.bus import Bus
from fervi.faces import Faces
from fervi.protocol import TrackEntry
from fervi.settings import load_settings
from fervi.tracking import FrameTracks

from .images import jpeg_claiming_size


@pytest.fixture
def app_client(redis_url):
    app, _socketio = create_app(load_settings({}), redis_url, token="t0ken", start_relay=False)
    return app.test_client()


def test_token_guards_everything_but_health(app_client):
    assert app_client.get("/healthz").status_code == 200
    assert app_client.get("/").status_code == 401
    assert app_client.get("/api/cameras").status_code == 401
    assert app_client.get("/?token=wrong").status_code == 401
    response = app_client.get("/?token=t0ken")
    assert response.status_code == 200 and b"Live wall" in response.data
    assert app_client.get("/charts").status_code == 200  # the cookie from the first visit


def test_metrics_are_prometheus_text(app_client, client):
    client.sadd("fervi:cameras", "cam1")
    client.set("fervi:{cam1}:seq", 42)
    client.hset("fervi:{cam1}:stats", mapping={"skipped": 3, "dead_lettered": 1})
    text = app_client.get("/metrics", headers={"Authorization": "Bearer t0ken"}).data.decode()
    assert 'fervi_camera_frames_in_total{camera="cam1"} 42.0' in text
    assert 'fervi_camera_frames_skipped_total{camera="cam1"} 3.0' in text
    assert 'fervi_camera_dead_letters_total{camera="cam1"} 1.0' in text


def test_metrics_have_each_cameras_skipped_ratio(app_client, client):
    """The share of a camera's recent frames the workers skipped, from the seqs of its tracked frames: here
    one frame in three processed."""
    bus = Bus(client)
    bus.register_camera("busy")
    faces = Faces.detected([[10, 10, 50, 50]], [0.9]).classified([[1 / 7] * 7]).tracked([1], [[1 / 7] * 7])
    for i in range(20):
        entry = TrackEntry("busy", 3 * i, 3 * i, 1000 + i / 5, 1000 + i / 5, 640, 480, faces)
        bus.publish_tracks("busy", [(entry, FrameTracks(3 * i, 1000 + i / 5, 0.2, faces, [], []))], 100)
    text = app_client.get("/metrics", headers={"Authorization": "Bearer t0ken"}).data.decode()
    assert 'fervi_camera_skipped_ratio{camera="busy"} 0.67' in text


@pytest.mark.parametrize(
    "data, kind, reason",
    [
        (b"", "image/png", "empty upload"),
        (b"%PDF-1.4 not an image", "application/pdf", "unsupported type"),
        (b"hello", "image/png", "not a readable image"),
        (jpeg_claiming_size(20000, 20000), "image/jpeg", "too large"),
        # sizes as people read them, in the units of the page's "up to 10 MB"
        (b"\xff" * (10 * 2**20 + 1), "image/jpeg", "the image is 10 MB: the limit is 10 MB"),
    ],
)
def test_bad_uploads_are_refused_with_a_reason(app_client, data, kind, reason):
    response = app_client.post(
        "/api/image?token=t0ken", data={"image": (io.BytesIO(data), "x", kind)}, content_type="multipart/form-data"
    )
    assert response.status_code == 400 and reason in response.get_json()["error"]


def test_unknown_camera_names_with_path_characters(app_client):
    response = app_client.get("/api/series/..%2Fetc?token=t0ken")
    assert response.status_code in (400, 404)


def test_token_bucket_slows_a_flooding_client():
    bucket = TokenBucket(rate=8, burst=8)
    allowed = sum(bucket.take(now=100.0 + i * 0.001) for i in range(100))  # 100 frames in 0.1 s
    assert allowed == 8
    assert bucket.take(now=100.5)  # tokens come back with time


def test_a_non_ascii_token_is_refused_not_a_crash(app_client):
    assert app_client.get("/api/cameras?token=t%C3%B6ken").status_code == 401
    assert app_client.get("/api/cameras", headers={"Authorization": "Bearer \u00e9\u00e9"}).status_code == 401


@pytest.mark.parametrize(
    "query, status",
    [
        ("resolution=1s&seconds=604800", 400),  # a week of seconds: 23.6 MB in 3.4 s before
        ("resolution=1s&seconds=abc", 400),
        ("resolution=1s&seconds=-5", 400),
        ("resolution=5s&seconds=60", 400),
        ("resolution=1m&seconds=604800", 200),
        ("resolution=1s&seconds=1800", 200),
    ],
)
def test_chart_queries_are_bounded(app_client, query, status):
    response = app_client.get(f"/api/series/cam1?{query}&token=t0ken")
    assert response.status_code == status, response.data
    if status == 400:
        assert "error" in response.get_json()


def test_an_open_dashboard_is_served_on_loopback_only():
    from click.testing import CliRunner
    from fervi.dashboard.app import ExposureError, check_exposure

    from fervi.app.cli import main

    check_exposure("127.0.0.1", "")
    check_exposure("0.0.0.0", "a-token-of-24-characters")
    with pytest.raises(ExposureError, match="FERVI_DASHBOARD_TOKEN"):
        check_exposure("0.0.0.0", "")
    for weak in (" ", "a", "+", "s3cret", " sixteen-chars-long "):  # guessable, or a space that was not meant
        with pytest.raises(ExposureError, match="weak FERVI_DASHBOARD_TOKEN"):
            check_exposure("0.0.0.0", weak)
    check_exposure("127.0.0.1", "a")  # loopback: the token is the user's own business
    result = CliRunner().invoke(main, ["dashboard", "--host", "0.0.0.0"], env={"FERVI_DASHBOARD_TOKEN": ""})
    assert result.exit_code == 1 and "without a token" in result.output and "Traceback" not in result.output


def test_healthz_fails_while_the_live_relay_fails(redis_url):
    """/healthz said ok while the relay (streams -> browsers) was failing."""
    import time

    app, _socketio = create_app(load_settings({}), redis_url, start_relay=True)
    relay = app.extensions["fervi_relay"]
    http = app.test_client()
    try:
        assert http.get("/healthz").status_code == 200
        working = relay.step

        def broken():
            raise RuntimeError("relay step broke")

        relay.step = broken
        time.sleep(1.5)
        relay.last_ok -= 60  # as if it had been failing for a minute
        response = http.get("/healthz")
        assert response.status_code == 503 and "relay step broke" in response.get_json()["error"]
        relay.step = working
        deadline = time.monotonic() + 10
        while http.get("/healthz").status_code != 200:
            assert time.monotonic() < deadline, "the relay did not recover"
            time.sleep(0.1)
    finally:
        relay.stop()


def test_an_unreachable_redis_is_one_line_not_a_traceback():
    from click.testing import CliRunner

    from fervi.app.cli import main

    result = CliRunner().invoke(main, ["status"], env={"FERVI_REDIS_URL": "redis://:secret@127.0.0.1:1/0"})
    assert result.exit_code == 1
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0 (FERVI_REDIS_URL)" in result.output
    assert "Traceback" not in result.output and "secret" not in result.output


def test_the_charts_say_how_many_faces_a_range_had_not_just_the_50_listed(app_client, redis_url):
    """A new user saw '50 face track(s)' for a range with about 130: the list is the newest 50, the count all."""
    import numpy as np

    from fervi.bus import Bus
    from fervi.faces import Faces
    from fervi.protocol import TrackEntry
    from fervi.tracking import FaceTracker

    bus, tracker, now = Bus.from_url(redis_url), FaceTracker(confirm_s=0.0), time.time() - 70
    happy = np.eye(7, dtype=np.float32)[3][None]
    for seq in range(60):  # a new face every second, far from the last one: 60 tracks
        box = np.array([[seq * 1000, 10, 80, 80]], np.float32)
        frame = tracker.update(seq, now + seq, Faces(box, np.ones(1), happy))
        entry = TrackEntry("crowd", seq, seq, now + seq, now + seq, 640, 480, frame.faces)
        bus.publish_tracks("crowd", [(entry, frame)], 1000)
    bus.register_camera("crowd")
    reply = app_client.get("/api/series/crowd?seconds=120&token=t0ken").get_json()
    assert len(reply["tracks"]) == 50 and reply["track_count"] == 60
