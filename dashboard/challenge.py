"""The acting challenge, decided by the server: a round is won when the tracker's smoothed probability of
the target emotion, on the player's own browser camera, stays above the threshold for the hold time.

The browser only asks for a round and shows the progress it is sent; it cannot post a result. The relay
(the one dashboard process holding the relay lock) feeds every tracks entry to the rounds on that camera
and settles a round once, in a Redis transaction with its leaderboard points. Only rounds under the
standard rules (`SCORED`), with a target the server drew, on the player's own camera, score; any other
round (a chosen target or rule, another camera) is practice.

A game is `GAME_ROUNDS` scored rounds in a row: the server keeps its round number, its score (the points of
its rounds) and a verdict per round in the round record, and when the last round is settled the game's
score goes to the games leaderboard (each name's best game, with its date).
"""

from __future__ import annotations

import random
import time
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any

from fervi.emotions import EMOTIONS
from fervi.protocol import TrackEntry

NAME_MAX = 24
MAX_POINTS = 10  # a round's points: the streak, capped
MAX_STEP_S = 0.5  # at most this much hold time from one tracks entry to the next (a stalled camera)
NEXT_ROUND_AFTER_S = 1.5  # a new round is refused sooner after the last one ended
GAME_ROUNDS = 5


@dataclass(frozen=True)
class Rules:
    threshold: float = 0.5
    hold_s: float = 1.0
    round_s: float = 15.0


SCORED = Rules()
PRACTICE_BOUNDS = {"threshold": (0.05, 1.0), "hold_s": (0.2, 10.0), "round_s": (3.0, 120.0)}


class ChallengeError(ValueError):
    """A round request that cannot be played (shown to the player as it is)."""


def clean_name(raw) -> str:
    """A player name as plain text: letters, digits, spaces and `- _ . '`, at most `NAME_MAX` characters."""
    text = unicodedata.normalize("NFKC", str(raw or ""))
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category[0] in "LN" or char in "-_.'":
            kept.append(char)
        elif category == "Zs" or char in "\t":
            kept.append(" ")
    return " ".join("".join(kept).split())[:NAME_MAX].strip() or "anonymous"


def shown_targets(totals: dict[str, float], allowed: list[str], least_s: float = 1.0) -> list[str]:
    """Targets for a round on another camera (practice): the emotions its faces showed for at least
    `least_s` face-seconds lately, since a recorded or demo camera cannot act out the others; all allowed
    ones when it showed none."""
    return [e for e in allowed if totals.get(e, 0.0) >= least_s] or list(allowed)


def practice_rules(asked: dict) -> Rules | None:
    """Rules the player asked for (threshold, hold, round), clamped; None when none was asked."""
    values = {}
    for key, (low, high) in PRACTICE_BOUNDS.items():
        given = asked.get(key.removesuffix("_s"))
        if given in (None, ""):
            continue
        try:
            values[key] = min(high, max(low, float(given)))
        except (TypeError, ValueError):
            raise ChallengeError(f"{key.removesuffix('_s')} must be a number") from None
    return Rules(**{**SCORED.__dict__, **values}) if values else None


def _draw_target(targets: list[str], previous: str | None, rng: random.Random | None) -> str:
    """A target at random, never the previous round's when there is another to ask for."""
    return (rng or random).choice([t for t in targets if t != previous] or targets)


def new_round(
    player: str,
    camera: str,
    own_camera: bool,
    asked: dict,
    targets: list[str],
    previous: dict | None,
    now: float | None = None,
    rng: random.Random | None = None,
) -> dict:
    """The record of a player's next round (stored in Redis, settled by the relay)."""
    now = time.time() if now is None else now
    if previous and previous.get("state") == "playing" and previous.get("camera") == camera:
        raise ChallengeError("a round is already running")
    if previous and now - previous.get("ended_at", 0.0) < NEXT_ROUND_AFTER_S:
        raise ChallengeError("too soon: the next round starts a moment after the last one")
    target = asked.get("target") or None
    if target is not None and target not in EMOTIONS:
        raise ChallengeError(f"target must be one of {', '.join(EMOTIONS)}")
    rules = practice_rules(asked)
    scored = own_camera and target is None and rules is None
    keep = previous or {}  # the streak that scores goes on across practice rounds, on any camera
    name = clean_name(asked.get("name"))
    game: dict[str, Any] = {}
    if asked.get("game") and scored:  # the next round of this player's game, or the first of a new one
        going = (
            keep.get("game_id")
            and not keep.get("game_over")
            and keep.get("name") == name
            and keep.get("camera") == camera
            and keep.get("round_no", 0) < keep.get("game_rounds", GAME_ROUNDS)
        )
        game = (
            {
                "game_id": keep["game_id"],
                "round_no": keep["round_no"] + 1,
                "game_rounds": keep["game_rounds"],
                "game_score": keep["game_score"],
                "verdicts": list(keep.get("verdicts", [])),
                "game_over": False,
            }
            if going
            else {
                "game_id": uuid.uuid4().hex[:12],
                "round_no": 1,
                "game_rounds": GAME_ROUNDS,
                "game_score": 0,
                "verdicts": [],
                "game_over": False,
            }
        )
    streak = 0 if game.get("round_no") == 1 else keep.get("streak", 0)  # each game starts its own streak
    return {
        **game,
        "id": uuid.uuid4().hex[:12],
        "player": player,
        "camera": camera,
        "name": name,
        "target": target or _draw_target(targets, keep.get("target"), rng),
        "scored": scored,
        **(rules or SCORED).__dict__,
        "started_at": now,
        "deadline": now + (rules or SCORED).round_s,
        "state": "playing",
        "held": 0.0,
        "best": 0.0,
        "last_ts": None,
        "points": 0,
        "streak": streak,
        "score": keep.get("score", 0),
        "won": keep.get("won", 0),
    }


def observe(record: dict, entry: TrackEntry) -> bool:
    """Feed one tracks entry of the round's camera; True when the hold time is reached (a win)."""
    index = EMOTIONS.index(record["target"])
    best = float(entry.faces.label_probs[:, index].max()) if len(entry.faces) else 0.0
    last = record["last_ts"]
    if entry.captured_at < record["started_at"] or (last is not None and entry.captured_at <= last):
        return False  # a frame from before the round, or one counted already (captured_at is the server's)
    step = 0.0 if last is None else min(MAX_STEP_S, entry.captured_at - last)
    record["last_ts"] = entry.captured_at
    record["best"] = round(best, 4)
    record["held"] = round(record["held"] + step, 3) if best >= record["threshold"] else 0.0
    return record["held"] >= record["hold_s"] and entry.captured_at <= record["deadline"]


def settle(record: dict, won: bool, now: float | None = None) -> tuple[dict, int]:
    """The round's end: streak, points and totals; returns (record, leaderboard points)."""
    record = dict(record, state="won" if won else "lost", ended_at=time.time() if now is None else now, points=0)
    if won:
        record["won"] += 1
    if record["scored"]:  # practice rounds neither build nor break the streak that scores
        record["streak"] = record["streak"] + 1 if won else 0
        record["points"] = min(record["streak"], MAX_POINTS) if won else 0
        record["score"] += record["points"]
    if record.get("game_id"):
        record["game_score"] += record["points"]
        record["verdicts"] = [
            *record["verdicts"],
            {"target": record["target"], "won": won, "points": record["points"], "held": record["held"]},
        ]
        record["game_over"] = record["round_no"] >= record["game_rounds"]
    return record, record["points"]


def progress(record: dict, now: float | None = None) -> dict:
    """What the player's page is sent about the round."""
    now = time.time() if now is None else now
    keys = (
        "id",
        "camera",
        "target",
        "scored",
        "threshold",
        "hold_s",
        "round_s",
        "state",
        "held",
        "best",
        "points",
        "streak",
        "score",
        "won",
        "name",
    )
    game = {
        k: record[k]
        for k in ("game_id", "round_no", "game_rounds", "game_score", "verdicts", "game_over")
        if k in record
    }
    return {**{k: record[k] for k in keys}, **game, "left_s": round(max(0.0, record["deadline"] - now), 2)}
