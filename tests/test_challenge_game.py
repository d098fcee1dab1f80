"""A game of the acting challenge: the server counts its rounds, adds their points, keeps a verdict per round,
ends it after GAME_ROUNDS and keeps each name's best game with its date."""

from __future__ import annotations

import random

from fervi.dashboard import challenge

from fervi.bus import Bus


def _play(previous, won: bool, now: float, name: str = "Ada", camera: str = "web-1"):
    record = challenge.new_round(
        "sid", camera, True, {"name": name, "game": True}, ["happy"], previous, now=now, rng=random.Random(0)
    )
    return challenge.settle(record, won, now=now + 5)[0]


def test_a_game_is_five_scored_rounds_with_a_verdict_each():
    record, now = None, 1000.0
    results = [True, True, False, True, True]
    for i, won in enumerate(results):
        record = _play(record, won, now)
        assert record["round_no"] == i + 1 and record["game_over"] == (i == 4)
        now += 10
    assert [v["won"] for v in record["verdicts"]] == results
    assert [v["points"] for v in record["verdicts"]] == [1, 2, 0, 1, 2]  # the streak scores, a miss resets it
    assert record["game_score"] == 6
    following = _play(record, True, now)  # after the last round: a new game
    assert following["round_no"] == 1 and following["game_id"] != record["game_id"] and following["game_score"] == 1


def test_practice_or_another_name_does_not_continue_a_game():
    record = _play(None, True, 1000.0)
    practice = challenge.new_round(
        "sid", "web-1", True, {"name": "Ada", "target": "sad", "game": True}, ["happy"], record, now=1010.0
    )
    assert "game_id" not in practice and not practice["scored"]
    other = _play(record, True, 1020.0, name="Bob")
    assert other["round_no"] == 1 and other["game_id"] != record["game_id"]


def test_the_games_board_keeps_each_names_best_game_and_its_date(client):
    bus = Bus(client)
    assert bus.record_game("Ada", 6, when=1_000) and bus.record_game("Bob", 9, when=2_000)
    assert not bus.record_game("Ada", 4, when=3_000)  # not her best: the board keeps 6 from its date
    assert bus.record_game("Ada", 12, when=4_000)
    assert bus.best_games() == [{"name": "Ada", "score": 12, "at": 4000.0}, {"name": "Bob", "score": 9, "at": 2000.0}]
    client.hset("fervi:{challenge}:gamedates", "Bob", "not a date")  # written by some other client
    assert bus.best_games()[1] == {"name": "Bob", "score": 9, "at": 0.0}


def test_a_round_on_another_camera_draws_from_what_its_faces_showed():
    """Found by a new user: on the demo camera (faces that are only happy or neutral) most random targets
    could not be won. Practice there draws from the emotions its faces showed lately."""
    totals = {"happy": 30.0, "neutral": 25.0, "sad": 0.4, "angry": 0.0}
    assert challenge.shown_targets(totals, ["angry", "happy", "sad", "neutral"]) == ["happy", "neutral"]
    assert challenge.shown_targets({}, ["angry", "happy"]) == ["angry", "happy"]  # nothing shown yet: any
    assert challenge.shown_targets(totals, ["angry", "sad"]) == ["angry", "sad"]  # FERVI_CHALLENGE_TARGETS rules
    draws = {
        challenge.new_round(
            "sid",
            "demo",
            False,
            {"name": "Ada"},
            challenge.shown_targets(totals, ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]),
            None,
            now=1000.0 + i,
            rng=random.Random(i),
        )["target"]
        for i in range(40)
    }
    assert draws == {"happy", "neutral"}


def test_no_round_asks_for_the_emotion_the_round_before_it_asked_for():
    """Drawn at random from the targets, but never the previous round's when another is allowed; with one
    target allowed, that one every time."""
    targets = ["happy", "sad", "surprise"]
    record, now = None, 1000.0
    asked = []
    for _ in range(40):
        record = challenge.new_round(
            "sid", "web-1", True, {"name": "Ada"}, targets, record, now=now, rng=random.Random(len(asked))
        )
        asked.append(record["target"])
        record = challenge.settle(record, True, now=now + 5)[0]
        now += 10
    assert all(a != b for a, b in zip(asked, asked[1:], strict=False)) and set(asked) == set(targets)
    assert {_play(None, True, 1000.0 + i)["target"] for i in range(5)} == {"happy"}
