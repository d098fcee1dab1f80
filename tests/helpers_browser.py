"""Headless Chromium for the browser tests: how it is launched, a page that may use the camera, and the
screenshots that go to docs/screenshots/ (committed, shown in the README)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from .conftest import REPO

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
