"""Uploaded videos: FERVI's own record of each (it outlives RQ's job records) and its jobs' progress. All on
`jobs`: FERVI_RQ_REDIS_URL's Redis where set (RQ does not support Redis Cluster), else the bus's own, as
the RQ queue the offline stage's jobs run from (`queue.py`)."""

from __future__ import annotations

import json
import time
from typing import Any

from .core import BusCore, decode, sync
from .keys import VIDEO_LIST, video_key, video_progress_key
from .scripts import UPDATE_IF_EXISTS


class Videos(BusCore):
    def create_video(self, video_id: str, record: dict[str, Any]) -> None:
        """FERVI's own record of an uploaded video (state, progress, outputs, times): it outlives RQ's jobs."""
        pipe = self.jobs.pipeline(transaction=False)
        pipe.hset(video_key(video_id), mapping={k: json.dumps(v) for k, v in record.items()})
        pipe.zadd(VIDEO_LIST, {video_id: record.get("created_at", time.time())})
        pipe.execute()

    def update_video(self, video_id: str, **fields: Any) -> bool:
        flat = [x for k, v in fields.items() for x in (k, json.dumps(v))]
        script = self._update_if_exists if self.jobs is self.redis else self.jobs.register_script(UPDATE_IF_EXISTS)
        return bool(script(keys=[video_key(video_id)], args=flat))

    def video(self, video_id: str) -> dict[str, Any] | None:
        raw = sync(self.jobs.hgetall(video_key(video_id)))
        if not raw:
            return None
        record = {decode(k): json.loads(v) for k, v in raw.items()}
        progress = [json.loads(v) for v in sync(self.jobs.hvals(video_progress_key(video_id)))]
        record["done"] = sum(p[0] for p in progress) if record.get("state") != "finished" else record.get("total", 0)
        record.setdefault("total", 0)
        record["total"] = max(record["total"], sum(p[1] for p in progress))
        return {"id": video_id, **record}

    def video_ids(self) -> list[str]:
        return [decode(v) for v in sync(self.jobs.zrange(VIDEO_LIST, 0, -1))]

    def video_progress(self, video_id: str, job_id: str, done: int, total: int) -> None:
        """A job's units done/total; a video's progress is the sum over its jobs."""
        key = video_progress_key(video_id)
        if self.jobs.exists(video_key(video_id)):
            self.jobs.hset(key, job_id, json.dumps([int(done), int(total)]))

    def reset_video_progress(self, video_id: str) -> None:
        """Forget the progress of a video's earlier jobs (it runs again with new ones)."""
        self.jobs.delete(video_progress_key(video_id))

    def delete_video(self, video_id: str) -> None:
        pipe = self.jobs.pipeline(transaction=False)
        pipe.delete(video_key(video_id), video_progress_key(video_id))
        pipe.zrem(VIDEO_LIST, video_id)
        pipe.execute()
