"""Offline videos from the dashboard: upload -> the same RQ jobs as `fervi analyze`, a live progress bar,
cancel, and the outputs to download."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import redis
from flask import Flask, abort, jsonify, request, send_from_directory
from rq import Queue
from rq.job import Job
from werkzeug.utils import secure_filename

from workers.video_io import VideoError
from workers.video_jobs import QUEUE, submit
from workers.video_runner import cancel_jobs, progress_of

MAX_VIDEO_BYTES = 2 * 2**30
OUTPUTS = ("faces.csv", "summary.json", "annotated.mp4", "timeline.png")
VIDEO_TTL_S = 7 * 86400
VIDEOS = "fervi:videos"  # hash: video id -> JSON {name, out, jobs (ids), final (id of the last job)}


def register_videos(app: Flask, client: redis.Redis, home: Path) -> None:
    queue = Queue(QUEUE, connection=client)
    uploads, outputs = home / "uploads", home / "videos"

    def record(video_id: str) -> dict:
        raw = client.hget(VIDEOS, video_id)
        if raw is None:
            abort(404)
        return json.loads(raw)

    def jobs(info: dict) -> tuple[list[Job], Job]:
        return [Job.fetch(i, connection=client) for i in info["jobs"]], Job.fetch(info["final"], connection=client)

    @app.post("/api/videos")
    def video_upload():
        upload = request.files.get("video")
        if upload is None or not upload.filename:
            return jsonify(error="send the video as multipart field 'video'"), 400
        video_id = uuid.uuid4().hex[:12]
        name = secure_filename(upload.filename) or "video.mp4"
        folder = uploads / video_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        upload.save(path)
        try:
            submitted = submit(queue, str(path), outputs / video_id, segments=2, every=1)
        except VideoError as err:
            path.unlink(missing_ok=True)
            return jsonify(error=str(err).replace(str(path), name)), 400
        client.hset(VIDEOS, video_id, json.dumps({"name": name, "out": submitted.out_dir,
                                                  "jobs": [j.id for j in submitted.jobs],
                                                  "final": submitted.finish.id}))
        return jsonify(id=video_id, name=name)

    @app.get("/api/videos")
    def video_list():
        return jsonify(sorted(({"id": k.decode(), **json.loads(v)} for k, v in client.hgetall(VIDEOS).items()),
                              key=lambda v: v["id"]))

    @app.get("/api/videos/<video_id>")
    def video_status(video_id: str):
        info = record(video_id)
        progress = progress_of(*jobs(info))
        files = [f for f in OUTPUTS if (Path(info["out"]) / f).exists()] if progress.state == "finished" else []
        return jsonify(id=video_id, name=info["name"], state=progress.state, done=progress.done,
                       total=progress.total, error=progress.error, files=files)

    @app.post("/api/videos/<video_id>/cancel")
    def video_cancel(video_id: str):
        cancel_jobs(jobs(record(video_id))[0], client)
        return jsonify(ok=True)

    @app.get("/videos/<video_id>/<name>")
    def video_file(video_id: str, name: str):
        if name not in OUTPUTS:
            abort(404)
        inline = name == "timeline.png" or (name == "annotated.mp4" and request.args.get("inline") == "1")
        return send_from_directory(record(video_id)["out"], name, as_attachment=not inline)
