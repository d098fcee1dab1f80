"""Cameras assigned to workers by weighted rendezvous hashing (`workers/assignment.py`): one owner each,
shares by weight, and only a leaving or joining worker's cameras move."""

from __future__ import annotations

from collections import Counter

from fervi.workers.assignment import HOT_HELPERS, Owners, assigned, owner, ranking

CAMERAS = [f"cam-{i:04d}" for i in range(2048)]


def owners(workers: dict[str, float]) -> dict[str, str | None]:
    return {c: owner(c, workers) for c in CAMERAS}


def test_every_camera_has_one_owner_and_shares_are_even():
    workers = {f"w{i}": 1.0 for i in range(16)}
    mine = {w: assigned(CAMERAS, workers, w)[0] for w in workers}
    assert sorted(c for cams in mine.values() for c in cams) == CAMERAS  # each camera once
    counts = [len(c) for c in mine.values()]
    assert min(counts) > 0.7 * 128 and max(counts) < 1.3 * 128, counts


def test_a_heavier_worker_gets_its_weight_s_share():
    workers = {"gpu": 8.0, **{f"cpu{i}": 1.0 for i in range(8)}}
    share = Counter(owners(workers).values())["gpu"] / len(CAMERAS)
    assert abs(share - 8 / 16) < 0.05, share


def test_only_the_cameras_of_a_worker_that_leaves_or_joins_move():
    workers = {f"w{i}": 1.0 for i in range(16)}
    before = owners(workers)
    without = owners({w: x for w, x in workers.items() if w != "w3"})
    moved = [c for c in CAMERAS if before[c] != without[c]]
    assert moved and all(before[c] == "w3" for c in moved) and "w3" not in without.values()
    joined = owners({**workers, "w16": 1.0})
    moved = [c for c in CAMERAS if before[c] != joined[c]]
    assert all(joined[c] == "w16" for c in moved) and 0.5 * 2048 / 17 < len(moved) < 1.5 * 2048 / 17


def test_a_hot_camera_is_helped_by_the_next_workers_in_its_ranking():
    workers = {f"w{i}": 1.0 for i in range(8)}
    hot = CAMERAS[0]
    ranked = ranking(hot, workers)
    helpers = [w for w in workers if hot in assigned(CAMERAS[:10], workers, w, hot=[hot])[1]]
    assert sorted(helpers) == sorted(ranked[1 : 1 + HOT_HELPERS])
    assert ranked[0] not in helpers and hot in assigned(CAMERAS[:10], workers, ranked[0], hot=[hot])[0]


def test_the_assignment_is_the_same_on_every_host():
    workers = {"a": 1.0, "b": 1.0, "c": 2.0}
    assert ranking("lobby", workers) == ranking("lobby", dict(reversed(list(workers.items()))))
    assert owner("lobby", {}) is None


def test_the_owner_found_without_sorting_is_the_first_of_the_ranking():
    workers = {"gpu": 8.0, **{f"cpu{i}": 1.0 for i in range(20)}}
    assert all(owner(c, workers) == ranking(c, workers)[0] for c in CAMERAS)
    assert owner("x", {"b": 1.0, "a": 1.0}) == ranking("x", {"b": 1.0, "a": 1.0})[0]


def test_owners_kept_up_to_date_agree_with_owners_computed_afresh():
    """`Owners` follows joins, leaves, new weights, new and removed cameras incrementally (a join is one hash
    per camera): after every change its owner of each camera is `owner`'s."""
    import random

    rng, cameras, workers, kept = random.Random(1), list(CAMERAS[:300]), {}, Owners()
    for step in range(200):
        dice = rng.random()
        if dice < 0.4 or not workers:
            workers[f"w{rng.randrange(30)}"] = rng.choice([1.0, 1.0, 8.0])
        elif dice < 0.7:
            workers.pop(rng.choice(list(workers)))
        elif dice < 0.85:
            cameras.append(f"new-{step}")
        else:
            cameras.remove(rng.choice(cameras))
        kept.update(cameras, workers)
        if not workers:  # no worker: no owner
            assert kept.best == {}
            continue
        assert {c: kept.best[c][1] for c in cameras} == {c: owner(c, workers) for c in cameras}, step
        assert sorted(kept.best) == sorted(cameras)
