"""The offline stage: a video analysed as RQ jobs (segments in parallel, then a merge), and its files.

- `jobs`: the RQ jobs (analyse a segment, merge, annotate a part, finish) and `submit`;
- `outputs`: faces.csv, summary.json, annotated.mp4 and timeline.png;
- `runner`: `fervi analyze` and `fervi rq-worker` (submit, follow, cancel, RQ workers);
- `video_io`: probing, seeking and cutting a video into segments.

The queue itself (enqueue, progress, stop, RQ's registries and workers) is the bus's: `fervi.bus.queue`.

What other stages use (the dashboard's video uploads) is imported from here.
"""

from .jobs import QUEUE, submit
from .video_io import VideoError

__all__ = ["QUEUE", "VideoError", "submit"]
