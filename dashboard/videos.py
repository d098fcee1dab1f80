"""Offline videos from the dashboard: upload -> the same RQ jobs as `fervi analyze`, a live progress bar,
cancel, retry, delete, the outputs to download, and a view of the queue and its RQ workers (`/api/jobs`).

FERVI keeps its own record of each video (`Bus.create_video`: name, state, progress, outputs, times); the
jobs keep it up to date and the last one marks it finished, so the page does not depend on how long RQ
keeps job records. A janitor (every `JANITOR_EVERY_S` in each dashboard process) records failures of
videos whose jobs failed for good, deletes videos (upload, outputs, record) `FERVI_VIDEO_RETENTION`
after they ended, and removes folders no record owns (an upload cut short by a crash).
"""

from __future__ import annotations

import errno
import io
import json
import logging
import re
import shutil
import time
import unicodedata
import uuid
from pathlib import Path
from typing import IO

from fervi.offline import QUEUE, VideoError, submit
from flask import Flask, abort, jsonify, request, send_from_directory
from werkzeug.datastructures import FileStorage
from werkzeug.formparser import FormDataParser

from fervi.bus import Bus
from fervi.vision.images import size_text

from .guard import MULTIPART_SLACK, body_limit

log = logging.getLogger(__name__)

MAX_VIDEO_BYTES = 2 * 2**30
OUTPUTS = ("faces.csv", "summary.json", "annotated.mp4", "timeline.png")
ENDED = ("finished", "failed", "canceled")
JANITOR_EVERY_S = 30.0
ORPHAN_AFTER_S = 3600.0  # a folder without a record, untouched this long, is left over from a crash
VIDEO_ID = re.compile(r"[0-9a-f]{12}")
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
FORM_FIELDS_BYTES = 500 * 1024  # the form's text fields and the parser's buffer (Werkzeug's default limit)


class DiskFull(OSError):
    """No room on the server's disk for an upload (nothing of it is left behind)."""


class PartFile(io.BufferedRandom):
    """The file a multipart file part streams into. Each write yields to other connections: under a gevent
    worker, parsing a 2 GB body that arrives faster than it is written would otherwise hold the process
    (and the worker's heartbeat) for its whole length; elsewhere `sleep(0)` costs nothing."""

    def write(self, data, /) -> int:
        written = super().write(data)
        time.sleep(0)
        return written


def open_part(folder: Path) -> IO[bytes]:
    """A new part file in `folder` (a dot name: not listed, e.g. on the Cameras page, until renamed)."""
    return PartFile(io.FileIO(folder / f".part-{uuid.uuid4().hex[:8]}", "w+"))


def receive_parts(stream: IO[bytes], folder: Path, mimetype: str, length: int | None, options: dict) -> FileStorage:
    """Parse a multipart body, each file part written to `folder` as it streams in (64 KB at a time, never
    the whole body in memory); returns the part `video` (empty when the body has none)."""
    if mimetype != "multipart/form-data":  # a form of another type would be parsed in memory
        return FileStorage()
    parser = FormDataParser(lambda *_args, **_kw: open_part(folder), max_form_memory_size=FORM_FIELDS_BYTES)
    _, _, files = parser.parse(stream, mimetype, length, options)
    video = files.get("video") or FileStorage()
    for part in files.values():
        part.stream.close()
        if part is not video:
            Path(str(part.stream.name)).unlink(missing_ok=True)
    return video


class Videos:
    """Uploaded videos: files under FERVI_HOME (uploads/<id>, videos/<id>) and FERVI's record in Redis."""

    def __init__(self, bus: Bus, home: Path, retention_s: float):
        self.bus = bus
        self.queue = bus.queue(QUEUE)
        self.uploads, self.outputs = home / "uploads", home / "videos"
        self.retention_s = retention_s

    def add(self, stream: IO[bytes], mimetype: str, length: int | None, options: dict) -> dict:
        """Save an uploaded multipart body (its field `video`) and submit its jobs. Nothing is left behind
        when it fails: VideoError for an unreadable file or a body with no video, DiskFull for a full disk."""
        video_id = uuid.uuid4().hex[:12]
        folder = self.uploads / video_id
        name = "video.mp4"
        try:
            folder.mkdir(parents=True)
            if length and shutil.disk_usage(folder).free < length:
                raise OSError(errno.ENOSPC, "not enough free space for the declared length")
            part = receive_parts(stream, folder, mimetype, length, options)
            if not part.filename:
                raise VideoError("send the video as multipart field 'video'")
            name = upload_name(part.filename) or name
            path = Path(str(part.stream.name)).rename(folder / name)
            submitted = submit(self.queue, str(path), self.outputs / video_id, segments=2, every=1, video_id=video_id)
        except BaseException as err:
            self._remove_files(video_id)
            if isinstance(err, VideoError):
                raise VideoError(str(err).replace(str(folder / name), name)) from None
            if isinstance(err, OSError) and err.errno in DISK_FULL:
                log.warning("event=video_upload_disk_full video=%s error=%s", video_id, err)
                raise DiskFull(
                    f"the server's disk is full ({size_text(self._free())} free): the video was not stored; "
                    "free some space there (or shorten FERVI_VIDEO_RETENTION) and upload it again"
                ) from None
            raise
        record = {
            "name": name,
            "out": submitted.out_dir,
            "jobs": submitted.ids,
            "final": submitted.finish.id,
            "state": "queued",
            "error": "",
            "total": submitted.total,
            "bytes": path.stat().st_size,
            "created_at": time.time(),
            "ended_at": None,
            "result": None,
        }
        self.bus.create_video(video_id, record)
        log.info("event=video_uploaded video=%s name=%s bytes=%d", video_id, name, path.stat().st_size)
        return {"id": video_id, "name": name}

    def _free(self) -> int:
        try:
            return shutil.disk_usage(self.uploads).free
        except OSError:
            return 0

    def _record(self, video_id: str) -> dict | None:
        """The record of a video id (None for an unknown one, or a string that is no video id)."""
        return self.bus.video(video_id) if VIDEO_ID.fullmatch(video_id) else None

    def status(self, video_id: str) -> dict | None:
        """The record, brought up to date from RQ while the video runs."""
        record = self._record(video_id)
        if record is None or record["state"] in ENDED:
            return record
        progress = self.queue.progress(record["jobs"])
        change: dict = {}
        if progress.state in ("failed", "canceled"):
            change = {"state": progress.state, "error": progress.error, "ended_at": time.time()}
        elif progress.state == "gone" and (self.bus.video(video_id) or {}).get("state") not in ENDED:
            # RQ keeps job records a day; one gone before the video ended will never run (or was lost)
            change = {"state": "failed", "error": progress.error, "ended_at": time.time()}
        elif progress.state == "running" or record["done"]:
            change = {"state": "running"} if record["state"] != "running" else {}
        if change:
            self.bus.update_video(video_id, **change)
            if change["state"] in ("failed", "canceled"):
                self.queue.stop(record["jobs"])  # the rest of its jobs will not be needed
            record = self.bus.video(video_id) or record
        return record

    def public(self, record: dict) -> dict:
        files = [f for f in OUTPUTS if (Path(record["out"]) / f).exists()] if record["state"] == "finished" else []
        keys = ("id", "name", "state", "done", "total", "error", "created_at", "ended_at")
        out = {**{k: record.get(k) for k in keys}, "files": files, "retries": record.get("retries", 0)}
        size = record.get("bytes", self._upload_bytes(record))
        if isinstance(size, int):  # the uploaded file's size, as the page shows it ("12.5 MB")
            out.update(bytes=size, size=size_text(size))
        if "summary.json" in files:  # what the page shows of the result: duration, faces, emotion shares
            try:
                summary = json.loads((Path(record["out"]) / "summary.json").read_text())
                out["summary"] = {k: summary[k] for k in ("duration_s", "tracks", "face_seconds", "emotion_share")}
            except (OSError, ValueError, KeyError):
                pass
        return out

    def _upload_bytes(self, record: dict) -> int | None:
        """The size of a video uploaded before records kept it (None when its upload is gone)."""
        try:
            return (self.uploads / str(record.get("id")) / str(record.get("name"))).stat().st_size
        except (OSError, ValueError):
            return None

    def retry(self, video_id: str) -> str:
        """Run a failed or canceled video again on its upload ('' when submitted, else why not). Segments a
        previous run finished are kept: their jobs find them done and return at once."""
        record = self._record(video_id)
        if record is None:
            raise KeyError(video_id)
        if record["state"] not in ("failed", "canceled"):
            return f"only a failed or canceled video can be retried; this one is {record['state']}"
        path = self.uploads / video_id / record["name"]
        if not path.is_file():
            return "its upload is gone (deleted, or past FERVI_VIDEO_RETENTION): upload it again"
        self.queue.stop(record["jobs"])
        try:
            submitted = submit(self.queue, str(path), self.outputs / video_id, segments=2, every=1, video_id=video_id)
        except VideoError as err:
            return str(err).replace(str(path), record["name"])
        self.bus.reset_video_progress(video_id)
        self.bus.update_video(
            video_id,
            jobs=submitted.ids,
            final=submitted.finish.id,
            state="queued",
            error="",
            ended_at=None,
            result=None,
            total=submitted.total,
            retries=int(record.get("retries", 0)) + 1,
        )
        log.info("event=video_retried video=%s retries=%d", video_id, int(record.get("retries", 0)) + 1)
        return ""

    def jobs_overview(self) -> dict:
        """The Videos page's view of the offline stage: waiting and failed jobs, and RQ's workers."""
        workers = [
            {"name": name, "state": info.get("state", ""), "job": info.get("job", "")}
            for name, info in sorted(self.queue.workers().items())
        ]
        return {**self.queue.stats(), "workers": workers}

    def cancel(self, video_id: str) -> bool:
        record = self._record(video_id)
        if record is None:
            return False
        if record["state"] not in ENDED:
            self.queue.stop(record["jobs"])
            self.bus.update_video(video_id, state="canceled", error="canceled", ended_at=time.time())
        return True

    def delete(self, video_id: str) -> bool:
        """Cancel if running, then remove the upload, the outputs and the record."""
        if not self.cancel(video_id):
            return False
        self.bus.delete_video(video_id)
        self._remove_files(video_id)
        log.info("event=video_deleted video=%s", video_id)
        return True

    def _remove_files(self, video_id: str) -> None:
        shutil.rmtree(self.uploads / video_id, ignore_errors=True)
        shutil.rmtree(self.outputs / video_id, ignore_errors=True)

    def sweep(self, now: float | None = None) -> dict:
        """Bring running videos up to date, delete those past retention, remove orphaned folders."""
        now = time.time() if now is None else now
        expired = 0
        ids = self.bus.video_ids()
        for video_id in ids:
            record = self.status(video_id)
            if record and self.retention_s and record.get("ended_at") and now - record["ended_at"] > self.retention_s:
                self.delete(video_id)
                expired += 1
        known, orphans = set(ids), 0
        for root in (self.uploads, self.outputs):
            for folder in root.glob("*") if root.is_dir() else []:
                if folder.name not in known and now - folder.stat().st_mtime > ORPHAN_AFTER_S:
                    shutil.rmtree(folder, ignore_errors=True)
                    orphans += 1
        if expired or orphans:
            log.info("event=videos_swept expired=%d orphans=%d retention_s=%.0f", expired, orphans, self.retention_s)
        return {"expired": expired, "orphans": orphans}

    def janitor(self, running=lambda: True) -> None:
        while running():
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - Redis away or a folder in use: try again next time
                log.exception("event=video_janitor_error")
            time.sleep(JANITOR_EVERY_S)


NAME_MAX_BYTES = 120  # a file name's bytes on disk (file systems allow 255)


def upload_name(filename: str) -> str:
    """A safe file name for an upload that keeps what it can of the user's: letters of any script, digits,
    '-', '_', '.', no path, no leading dot, at most NAME_MAX_BYTES in UTF-8 (its extension kept)."""
    name = unicodedata.normalize("NFC", filename).replace("\\", "/").rsplit("/", 1)[-1]
    name = "_".join(re.sub(r"[^\w.\-]+", " ", name).split()).lstrip("._")
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext.encode()) > 16:
        stem, ext = name, ""
    room = NAME_MAX_BYTES - len(ext.encode()) - 1
    stem = stem.encode()[:room].decode("utf-8", "ignore").rstrip("._")
    return f"{stem}.{ext}" if stem and ext else stem


def register_videos(app: Flask, bus: Bus, home: Path, retention_s: float) -> Videos:
    videos = Videos(bus, home, retention_s)

    def found(video_id: str) -> dict:
        record = videos.status(video_id)
        if record is None:
            abort(404)
        return record

    def ok_or_404(found: bool):
        """The answer to an action on a video: ok, or 404 when there is no such video."""
        if not found:
            abort(404)
        return jsonify(ok=True)

    # the page says the limit before an upload, in the words of the 413 a larger one gets
    app.context_processor(lambda: {"video_limit": size_text(MAX_VIDEO_BYTES), "video_limit_bytes": MAX_VIDEO_BYTES})

    @app.post("/api/videos")
    @body_limit(MAX_VIDEO_BYTES + MULTIPART_SLACK, f"a video is at most {size_text(MAX_VIDEO_BYTES)}")
    def video_upload():
        try:
            return jsonify(
                videos.add(request.stream, request.mimetype, request.content_length, request.mimetype_params)
            )
        except VideoError as err:
            return jsonify(error=str(err)), 400
        except DiskFull as err:
            return jsonify(error=str(err)), 507

    @app.get("/api/videos")
    def video_list():
        records = (videos.status(i) for i in videos.bus.video_ids())
        return jsonify([videos.public(r) for r in records if r is not None])

    @app.get("/api/videos/<video_id>")
    def video_status(video_id: str):
        return jsonify(videos.public(found(video_id)))

    @app.post("/api/videos/<video_id>/cancel")
    def video_cancel(video_id: str):
        return ok_or_404(videos.cancel(video_id))

    @app.post("/api/videos/<video_id>/retry")
    def video_retry(video_id: str):
        try:
            why_not = videos.retry(video_id)
        except KeyError:
            abort(404)
        if why_not:
            return jsonify(error=why_not), 409
        return jsonify(ok=True)

    @app.get("/api/jobs")
    def jobs():
        return jsonify(videos.jobs_overview())

    @app.delete("/api/videos/<video_id>")
    def video_delete(video_id: str):
        return ok_or_404(videos.delete(video_id))

    @app.get("/videos/<video_id>/<name>")
    def video_file(video_id: str, name: str):
        record = found(video_id)
        if name not in OUTPUTS or record["state"] != "finished":
            abort(404)
        inline = name == "timeline.png" or (name == "annotated.mp4" and request.args.get("inline") == "1")
        return send_from_directory(record["out"], name, as_attachment=not inline)

    return videos
