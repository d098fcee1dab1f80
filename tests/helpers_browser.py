"""Headless Chromium for the browser tests: how it is launched, a page that may use the camera, and the
screenshots that go to docs/screenshots/ (committed, shown in the README); a dashboard alone on Redis and a
camera whose tracks entries the test writes, for pages whose faces and rates the test decides."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import cv2
import numpy as np
import pytest
import redis

from fervi.bus import Bus
from fervi.embedded import free_port
from fervi.faces import Faces
from fervi.protocol import TrackEntry
from fervi.tracking import FrameTracks

from .conftest import REPO, Processes, fervi_env, http_ok, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# a camera without asking the user: Chromium's fake device (a test pattern, or the clip of
# --use-file-for-fake-video-capture)
FAKE_CAMERA_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
SHOTS = REPO / "docs" / "screenshots"


@contextmanager
def chromium(playwright, *args: str) -> Iterator:
    """Headless Chromium with CHROMIUM_ARGS and these `args`, closed on the way out."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, *args])
    try:
        yield browser
    finally:
        browser.close()


@contextmanager
def camera_page(browser, origin: str, width: int = 1280, height: int = 900) -> Iterator:
    """A page in a context of its own, of this viewport, that may use the camera on `origin`."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.grant_permissions(["camera"], origin=origin)
    try:
        yield context.new_page()
    finally:
        context.close()


def shot(page, name: str) -> None:
    """The whole page to docs/screenshots/<name>.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module", name="browser")
def alone_browser(dashboard):
    """Chromium (with the fake camera) for a module whose fixture `dashboard` is a `dashboard_alone`."""
    playwright_sync = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with playwright_sync.sync_playwright() as playwright, chromium(playwright, *FAKE_CAMERA_ARGS) as browser:
        yield browser


@pytest.fixture(name="page")
def alone_page(browser, dashboard):
    with camera_page(browser, dashboard["url"]) as page:
        yield page


@contextmanager
def dashboard_alone(tmp, redis_url: str, **env: Any) -> Iterator[dict[str, Any]]:
    """The dashboard alone on a flushed Redis (no worker or tracker writes faces of their own): its url, a bus
    and its processes (to stop it)."""
    redis.Redis.from_url(redis_url).flushall()
    port = free_port()
    settings = fervi_env(
        redis_url, FERVI_DASHBOARD_PORT=port, FERVI_BLOCK_MS=200, FERVI_WEB_CONNECTS_PER_MINUTE=600, **env
    )
    settings.pop("FERVI_UNCERTAIN_MARGIN", None)  # the default margin, 0.2
    procs = Processes(tmp)
    procs.start(["dashboard"], settings, "dashboard")
    wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "the dashboard")
    try:
        yield {"url": f"http://127.0.0.1:{port}", "bus": Bus(redis.Redis.from_url(redis_url)), "procs": procs}
    finally:
        procs.stop_all()


class Camera:
    """Writes a camera's tracks entries (and its preview frame) five times a second, as the tracker would,
    until stopped: the relay sends each camera's new entries only, from when it first sees the camera.
    `seq_step`: the camera sent that many frames for each one processed (the others skipped)."""

    def __init__(self, bus: Bus, camera: str, faces: Faces, frame: np.ndarray, seq_step: int = 1):
        self.bus, self.camera, self.faces, self.seq_step = bus, camera, faces, seq_step
        self.jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        seq = 0
        while not self.stopped.is_set():
            seq += self.seq_step
            now = time.time()
            entry = TrackEntry(self.camera, seq, seq, now - 0.05, now, 640, 480, self.faces)
            self.bus.publish_tracks(self.camera, [(entry, FrameTracks(seq, now, 0.2, self.faces, [], []))], 100)
            self.bus.set_latest_frame(self.camera, seq, self.jpeg)
            self.stopped.wait(0.2)

    def __enter__(self) -> Camera:
        self.bus.register_camera(self.camera)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(5)
