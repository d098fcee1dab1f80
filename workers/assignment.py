"""Which cameras a worker reads: weighted rendezvous hashing over the live workers (pure, no Redis).

Each camera belongs to the live worker with the highest score -weight / ln(u), u being a hash of (camera,
worker) in (0, 1) (Schindelhauer and Schomaker's weighted rendezvous hashing): every worker computes the
same answer from the same list of workers, with nothing to agree on and no coordinator; a worker of twice the
weight (a GPU worker) gets twice the cameras on average; and when a worker joins or leaves, only the cameras
it takes or gives move (about C / W of them), all others stay where they are.

A camera whose owner cannot keep up is "hot" (its owner says so in Redis): the next HOT_HELPERS workers in
that camera's ranking read it too, so one very busy camera can use several workers (its frames are
independent; the tracker restores their order).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping

HOT_HELPERS = 3  # workers that help a hot camera besides its owner


def _prefix(camera: str) -> hashlib.blake2b:
    """The camera's half of the pair's hash, to be copied for each worker (`_score`)."""
    return hashlib.blake2b(f"{camera}\0".encode(), digest_size=8)


def _score(prefix: hashlib.blake2b, worker: str, weight: float) -> float:
    """-weight / ln(u), u a hash of (camera, worker) in (0, 1): the same on every host and Python (not `hash`,
    which is salted)."""
    pair = prefix.copy()
    pair.update(worker.encode())
    return -max(weight, 1e-9) / math.log((int.from_bytes(pair.digest(), "big") + 0.5) / 2**64)


def ranking(camera: str, workers: Mapping[str, float]) -> list[str]:
    """The live workers in the camera's order of preference: its owner first."""
    prefix = _prefix(camera)
    scores = {w: _score(prefix, w, weight) for w, weight in workers.items()}
    return sorted(scores, key=lambda w: (-scores[w], w))


def owner(camera: str, workers: Mapping[str, float]) -> str | None:
    """The camera's owner, the first of its `ranking`, found without sorting."""
    best = Owners._best(camera, workers.items())
    return best[1] or None


def _better(score: float, worker: str, than: tuple[float, str] | None) -> bool:
    return than is None or score > than[0] or (score == than[0] and worker < than[1])


class Owners:
    """The owners of all cameras among the live workers (`owner` of each), kept up to date as they change:
    a worker that joins costs one hash per camera (does it beat the camera's owner?), one that leaves a full
    ranking of its own cameras only, a new camera one ranking. Computing all owners again at each change
    would cost C x W hashes in every worker at every join: a storm while many workers start."""

    def __init__(self) -> None:
        self.workers: dict[str, float] = {}
        self.best: dict[str, tuple[float, str]] = {}  # camera -> (its owner's score, its owner)

    def update(self, cameras: Iterable[str], workers: Mapping[str, float]) -> None:
        changed = {w for w in set(workers) | set(self.workers) if workers.get(w) != self.workers.get(w)}
        joined = [w for w in changed if w in workers]  # a new weight counts as leaving and joining again
        cameras = set(cameras)
        for camera in set(self.best) - cameras:
            del self.best[camera]
        redo = {c for c in cameras if c not in self.best or self.best[c][1] in changed}
        kept = [c for c in self.best if c not in redo]
        self.workers = dict(workers)
        for camera in redo:
            self.best[camera] = self._best(camera, self.workers.items())
        if joined:
            for camera in kept:
                prefix = _prefix(camera)
                for w in joined:
                    score = _score(prefix, w, self.workers[w])
                    if _better(score, w, self.best[camera]):
                        self.best[camera] = (score, w)
        for camera in [c for c, (_, o) in self.best.items() if o == ""]:  # no worker at all
            del self.best[camera]

    @staticmethod
    def _best(camera: str, workers: Iterable[tuple[str, float]]) -> tuple[float, str]:
        prefix = _prefix(camera)
        best: tuple[float, str] | None = None
        for w, weight in workers:
            score = _score(prefix, w, weight)
            if _better(score, w, best):
                best = (score, w)
        return best if best is not None else (-math.inf, "")

    def owned_by(self, me: str) -> list[str]:
        return sorted(c for c, (_, o) in self.best.items() if o == me)


def owned(cameras: Iterable[str], workers: Mapping[str, float], me: str) -> list[str]:
    """The cameras `me` owns among `workers`, sorted: computed when the cameras or the workers change."""
    return sorted(c for c in cameras if owner(c, workers) == me)


def helped(hot: Iterable[str], workers: Mapping[str, float], me: str) -> list[str]:
    """The hot cameras `me` helps (it is among the next HOT_HELPERS of their ranking), sorted: hot cameras
    are few, so this is cheap to compute at every refresh."""
    return sorted(c for c in set(hot) if me in ranking(c, workers)[1 : 1 + HOT_HELPERS])


def assigned(
    cameras: Iterable[str], workers: Mapping[str, float], me: str, hot: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """(the cameras `me` owns, the hot cameras of others it helps), each sorted."""
    cameras = list(cameras)
    known = set(cameras)
    return owned(cameras, workers, me), helped([c for c in hot if c in known], workers, me)
