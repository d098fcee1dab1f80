"""The acting challenge: each player's current round, the leaderboard of points and that of games. One hash
tag, so a round and the leaderboard change in one transaction on a cluster."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import redis
from redis.typing import KeyT

from .core import BusCore, decode, sync
from .keys import GAME_DATES, GAMES, LEADERBOARD, LEADERBOARD_SIZE, ROUND_FIELDS, ROUND_TTL_S, ROUNDS, round_key


class _Watching(Protocol):
    """A transaction pipeline's WATCH as redis-py documents it (its code leaves `watch` unannotated)."""

    def watch(self, *names: KeyT) -> object: ...


def _watch(pipe: _Watching, key: str) -> None:
    pipe.watch(key)


class Challenge(BusCore):
    def save_round(self, player: str, record: dict[str, Any]) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(round_key(player), json.dumps(record), ex=ROUND_TTL_S)
        pipe.sadd(ROUNDS, player)
        pipe.execute()

    def load_round(self, player: str) -> dict[str, Any] | None:
        raw = sync(self.redis.get(round_key(player)))
        record: dict[str, Any] | None = json.loads(raw) if raw else None
        return record

    def rounds(self) -> dict[str, dict[str, Any]]:
        """Every player's current round; players whose record expired leave the index."""
        players = sorted(decode(p) for p in sync(self.redis.smembers(ROUNDS)))
        if not players:
            return {}
        out = {}
        for player, raw in zip(players, sync(self.redis.mget([round_key(p) for p in players])), strict=True):
            if raw is None:
                self.redis.srem(ROUNDS, player)
                continue
            try:
                record = json.loads(raw)
                missing = ROUND_FIELDS - set(record) if isinstance(record, dict) else ROUND_FIELDS
                if missing:
                    raise ValueError(f"missing {', '.join(sorted(missing))}")
                out[player] = record
            except ValueError as err:
                self.untrusted.skip("challenge_round", player, str(err))
                self.drop_round(player)
        return out

    def drop_round(self, player: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(round_key(player))
        pipe.srem(ROUNDS, player)
        pipe.execute()

    def settle_round(
        self, player: str, round_id: str, settle: Callable[..., tuple[dict[str, Any], float]]
    ) -> dict[str, Any] | None:
        """End round `round_id` of `player` once: `settle(record)` returns (new record, points for the
        leaderboard), written with the points in one transaction. None if the round is no longer that one
        or has already ended (another dashboard process, or a new round started)."""
        key = round_key(player)
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    _watch(pipe, key)
                    raw = sync(pipe.get(key))
                    record: dict[str, Any] | None = json.loads(raw) if raw else None
                    if not record or record.get("id") != round_id or record.get("state") != "playing":
                        pipe.unwatch()
                        return None
                    record, points = settle(record)
                    pipe.multi()
                    pipe.set(key, json.dumps(record), ex=ROUND_TTL_S)
                    if points > 0:
                        pipe.zincrby(LEADERBOARD, points, record["name"])
                        pipe.zremrangebyrank(LEADERBOARD, 0, -LEADERBOARD_SIZE - 1)
                    pipe.execute()
                    return record
                except redis.WatchError:
                    continue

    def record_game(self, name: str, score: int, when: float | None = None) -> bool:
        """A finished game: kept when it is the name's best (with its date). True if it was."""
        when = time.time() if when is None else when
        return bool(
            self._record_game(keys=[GAMES, GAME_DATES], args=[name, int(score), f"{when:.0f}", LEADERBOARD_SIZE])
        )

    def best_games(self, count: int = 10) -> list[dict[str, Any]]:
        """The best game of each name, best first: name, score, when it was played (unix s)."""
        rows = sync(self.redis.zrevrange(GAMES, 0, count - 1, withscores=True))
        dates = sync(self.redis.hmget(GAME_DATES, [n for n, _ in rows])) if rows else []
        out = []
        for (name, score), when in zip(rows, dates, strict=True):
            try:
                at = float(when) if when is not None else 0.0
            except ValueError:
                at = 0.0  # a date some other client wrote
            if math.isfinite(score):
                out.append({"name": decode(name), "score": int(score), "at": at})
        return out

    def leaderboard(self, count: int = 10) -> list[dict[str, Any]]:
        return [
            {"name": decode(n), "score": int(s)}
            for n, s in sync(self.redis.zrevrange(LEADERBOARD, 0, count - 1, withscores=True))
            if math.isfinite(s)  # an inf some other client wrote is no score
        ]
