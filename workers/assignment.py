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


def _unit(camera: str, worker: str) -> float:
    """A hash of the pair in (0, 1), the same on every host and Python (not `hash`, which is salted)."""
    digest = hashlib.blake2b(f"{camera}\0{worker}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2**64


def ranking(camera: str, workers: Mapping[str, float]) -> list[str]:
    """The live workers in the camera's order of preference: its owner first."""
    scores = {w: -max(weight, 1e-9) / math.log(_unit(camera, w)) for w, weight in workers.items()}
    return sorted(scores, key=lambda w: (-scores[w], w))


def owner(camera: str, workers: Mapping[str, float]) -> str | None:
    """The camera's owner, the first of its `ranking`, found without sorting (owning all cameras is C x W
    hashes, computed when the cameras or the workers change)."""
    best, best_score = None, -math.inf
    prefix = hashlib.blake2b(f"{camera}\0".encode(), digest_size=8)
    for w, weight in workers.items():
        pair = prefix.copy()
        pair.update(w.encode())
        score = -max(weight, 1e-9) / math.log((int.from_bytes(pair.digest(), "big") + 0.5) / 2**64)
        if score > best_score or (score == best_score and best is not None and w < best):
            best, best_score = w, score
    return best


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
