"""The Cameras page's API: list the cameras FERVI runs with their ingest state, add and remove them.

The dashboard only writes the registry (`Bus.add_source`); the camera supervisor (`fervi cameras supervise`,
run by `fervi up`) starts and stops the ingest processes and each ingest reports its state.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from flask import Flask, jsonify

from fervi.bus import Bus, RegistryFull
from fervi.clock import clock_warning
from fervi.protocol import (
    IMAGE_CAMERA_PREFIX,
    CameraSource,
    ProtocolError,
    check_camera,
    check_file_on_disk,
    is_browser_camera,
    resolved_within,
    source_kind,
)
from fervi.settings import Settings, mask_password

from .guard import body_limit, json_object

MAX_BODY_BYTES = 16 * 1024  # a camera is a name, a source of at most 1024 characters and two options
QUIET_S = 15.0  # a running ingest says how it goes every 2 s: this long without news, it is shown as stalled
RUNNING_STATES = ("starting", "live", "playing")


KIND_HINTS = {  # what the page's Kind menu expects, said when the source does not look like it
    "webcam": "a webcam of the server is its number: 0 for the first one",
    "stream": "a stream is a URL, such as rtsp://user:password@host/stream or https://host/video.mjpg",
    "file": "give the file's absolute path on the server, starting with /",
}


class SourceRefused(ValueError):
    """A camera the page may not add (the message says why and what to change)."""


def check_file_source(path: str, roots: list[Path]) -> str:
    """A file source from the page: an existing path inside FERVI_CAMERA_FILE_ROOTS (symlinks resolved)."""
    if not roots:
        raise SourceRefused("files cannot be added from the dashboard (FERVI_CAMERA_FILE_ROOTS is empty)")
    if not path.startswith("/"):
        raise SourceRefused(KIND_HINTS["file"])
    resolved = resolved_within(path, roots)
    if resolved is None:
        raise SourceRefused(
            f"{path} is outside the folders the dashboard may read "
            f"({', '.join(map(str, roots))}; FERVI_CAMERA_FILE_ROOTS)"
        )
    try:
        check_file_on_disk(path)
    except ProtocolError as err:
        raise SourceRefused(str(err)) from None
    return str(resolved)


def _count(value: object) -> int:
    """A counter from a camera's ingest state: 0 for one some client spoilt ("x", "nan", "inf")."""
    try:
        number = float(value or 0)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0
    return int(number) if math.isfinite(number) else 0


def describe(source: CameraSource | None, camera: str, state: dict, now: float, supervised: bool) -> dict:
    """One row of the page: the registration (if any) with the state its ingest last wrote."""
    row = {
        "camera": camera,
        "managed": source is not None,
        "state": state.get("state", ""),
        "reason": state.get("reason", ""),
        "sent": _count(state.get("sent")),
    }
    spec = source.source if source else state.get("source", "")
    row.update(source=mask_password(spec), kind=source_kind(spec) if spec else "")
    if source is not None:
        row.update(fps=source.fps, loop=source.loop, origin=source.origin, added_at=source.added_at)
    try:
        updated = float(state.get("updated_at") or 0)
    except ValueError:
        updated = 0.0
    updated = updated if math.isfinite(updated) else 0.0
    row["updated_at"] = updated
    if not row["state"]:
        row["state"] = "waiting"
        row["reason"] = (
            "" if supervised else "no camera supervisor runs (start `fervi up` or `fervi cameras supervise`)"
        )
    elif row["state"] in RUNNING_STATES and updated and now - updated > QUIET_S:
        row["state"] = "stalled"
        row["reason"] = f"no news from its ingest for {now - updated:.0f} s"
    row["clock"] = clock_warning(state)
    return row


def _short(message: str, most: int = 300) -> str:
    return message if len(message) <= most else message[: most - 1] + "…"


def uploaded_videos(folder: Path, most: int = 50) -> list[dict[str, str]]:
    """The videos uploaded on the Videos page (`<folder>/<id>/<name>`), newest first: what the Cameras page
    offers to play as a camera."""
    files = [f for f in folder.glob("*/*") if f.is_file() and not f.name.startswith(".")] if folder.is_dir() else []
    files.sort(key=lambda f: f.stat().st_mtime, reverse=True)
    return [{"name": f.name, "path": str(f.resolve())} for f in files[:most]]


def camera_from_request(body: object, roots: list[Path]) -> CameraSource:
    """The camera a page asks to add (its JSON body), checked: SourceRefused says what to change."""
    if not isinstance(body, dict):
        raise SourceRefused("send a JSON object: camera, source, fps, loop")
    name, spec, fps, loop = body.get("camera", ""), body.get("source", ""), body.get("fps", 0), body.get("loop", False)
    if not isinstance(name, str) or not isinstance(spec, str):
        raise SourceRefused("camera and source are text")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)):
        raise SourceRefused("fps must be a number")
    if not isinstance(loop, bool):
        raise SourceRefused("loop must be true or false")
    kind = body.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise SourceRefused(f"kind is one of {', '.join(KIND_HINTS)}")
    try:
        spec = spec.strip()
        if kind in KIND_HINTS and spec and source_kind(spec) != kind:
            raise SourceRefused(KIND_HINTS[kind])
        if spec and source_kind(spec) == "file":
            spec = check_file_source(spec, roots)
        # a file plays at its own frame rate, as a camera would (the charts then count video time)
        live = True if source_kind(spec or "0") == "file" else None
        return CameraSource(name.strip(), spec, float(fps), loop, live, origin="dashboard")
    except ProtocolError as err:
        raise SourceRefused(str(err)) from None
    except OverflowError:
        raise SourceRefused("fps must be a number") from None


def register_cameras(app: Flask, bus: Bus, settings: Settings) -> None:
    roots = settings.camera_file_root_list

    @app.get("/api/sources")
    def sources():
        registered = bus.sources()
        running = [c for c in bus.cameras() if not is_browser_camera(c) and not c.startswith(IMAGE_CAMERA_PREFIX)]
        states = bus.source_states(set(registered) | set(running))
        supervised = bus.supervisor_running()
        now = time.time()
        cameras = sorted(set(registered) | set(states))
        return jsonify(
            cameras=[
                {**describe(registered.get(c), c, states.get(c, {}), now, supervised), **bus.frame_rates(c)}
                for c in cameras
            ],
            supervised=supervised,
            file_roots=[str(r) for r in roots],  # as this running dashboard has them
            uploads=uploaded_videos(settings.uploads_dir),
        )

    @app.post("/api/sources")
    @body_limit(MAX_BODY_BYTES, f"a camera is described in at most {MAX_BODY_BYTES} bytes")
    def add_source():
        body = json_object("camera, source, fps, loop")
        try:
            source = camera_from_request(body, roots)
        except SourceRefused as err:
            return jsonify(error=_short(str(err))), 400
        if bus.streams_elsewhere(source.camera):
            return jsonify(
                error=f"a camera named {source.camera!r} already streams (run by `fervi ingest` "
                "elsewhere): pick another name"
            ), 409
        try:
            added = bus.add_source(source, most=settings.cameras_max)
        except RegistryFull as err:
            return jsonify(error=str(err)), 409
        if not added:
            return jsonify(error=f"a camera named {source.camera!r} exists: remove it first or pick another name"), 409
        return jsonify(camera=source.camera, kind=source.kind), 201

    @app.delete("/api/sources/<camera>")
    def remove_source(camera: str):
        try:
            check_camera(camera)
        except ProtocolError as err:
            return jsonify(error=str(err)), 400
        if not bus.remove_source(camera):
            return jsonify(error=f"{camera} is not a camera this dashboard runs"), 404
        return jsonify(removed=camera)
