"""Training on pairs of framings (`fervi train --agreement`): the loss and the batches it is given."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from fervi.training.agreement import (  # noqa: E402 - after importorskip: without Keras the module is skipped
    CrossEntropyWithAgreement,
    PairedViews,
    js_divergence,
    paired_eval_batches,
)

from fervi.emotions import NUM_EMOTIONS  # noqa: E402 - after importorskip, as above


def _probs(rows):
    p = np.asarray(rows, np.float32)
    return p / p.sum(axis=1, keepdims=True)


def test_js_divergence_is_zero_for_equal_predictions_symmetric_and_bounded():
    p = _probs([[8, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 8]])
    q = p[::-1]
    same = np.asarray(js_divergence(p, p))
    assert np.allclose(same, 0, atol=1e-6)
    apart = np.asarray(js_divergence(p, q))
    assert np.all(apart > 0.1) and np.allclose(apart, np.asarray(js_divergence(q, p)))
    assert np.all(apart <= np.log(2) + 1e-6)


def test_loss_adds_the_weighted_divergence_between_the_two_halves():
    y = np.eye(NUM_EMOTIONS, dtype=np.float32)[[0, 6]]
    a = _probs([[8, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 8]])
    b = _probs([[4, 1, 1, 1, 1, 1, 4], [4, 1, 1, 1, 1, 1, 4]])
    plain = keras.losses.CategoricalCrossentropy()
    loss = CrossEntropyWithAgreement(weight=3.0)
    # the same view twice: only the cross-entropy is left
    assert float(loss(np.concatenate([y, y]), np.concatenate([a, a]))) == pytest.approx(float(plain(y, a)), rel=1e-5)
    # two views that disagree: cross-entropy of both + 3 x their divergence
    expected = (float(plain(y, a)) + float(plain(y, b))) / 2 + 3.0 * float(np.mean(js_divergence(a, b)))
    assert float(loss(np.concatenate([y, y]), np.concatenate([a, b]))) == pytest.approx(expected, rel=1e-5)
    # saved with the model: it comes back with its settings
    again = CrossEntropyWithAgreement.from_config(CrossEntropyWithAgreement(2.5, 0.1).get_config())
    assert (again.weight, again.label_smoothing) == (2.5, 0.1)


def test_paired_batches_hold_two_framings_of_the_same_faces_row_for_row():
    faces, framings = 40, 3
    # face i in framing k: a left-right symmetric image of value 3 * i + k (mirroring keeps it)
    views = np.zeros((framings, faces, 48, 48), np.uint8)
    for k in range(framings):
        views[k] = (3 * np.arange(faces) + k)[:, None, None]
    labels = np.arange(faces) % NUM_EMOTIONS
    index = np.concatenate([np.arange(faces), np.arange(5)])  # over-sampled: the first five twice
    batches = PairedViews(views, labels, index, batch_size=8, seed=1)
    assert len(batches) == len(index) // 8
    seen, drawn = [], set()
    for epoch in range(2):
        for i in range(len(batches)):
            x, y = batches[i]
            assert x.shape == (16, 48, 48, 1) and x.dtype == np.float32
            face_a, face_b = x[:8, 0, 0, 0] // 3, x[8:, 0, 0, 0] // 3
            assert np.array_equal(face_a, face_b)  # row i and row i + 8: one face
            assert np.array_equal(y[:8], y[8:]) and np.array_equal(y[:8].argmax(1), labels[face_a.astype(int)])
            drawn |= set((x[:, 0, 0, 0] % 3).astype(int))
            if epoch == 0:
                seen += face_a.astype(int).tolist()
        batches.on_epoch_end()
    assert drawn == {0, 1, 2}  # every framing is drawn
    assert len(set(seen)) >= 35  # an epoch goes through the (shuffled) index


def test_validation_batches_hold_each_face_twice_in_the_same_view():
    images = np.arange(5 * 48 * 48, dtype=np.uint8).reshape(5, 48, 48)
    x, y = next(iter(paired_eval_batches(images, np.arange(5), 8)))
    assert x.shape == (10, 48, 48, 1) and np.array_equal(x[:5], x[5:]) and np.array_equal(y[:5], y[5:])
    with pytest.raises(ValueError, match="views"):
        PairedViews(images[None], np.arange(4), np.arange(4), 2, 0)


def test_the_gpu_path_is_refused_with_agreement_instead_of_ignoring_it(tmp_path):
    from click.testing import CliRunner

    from fervi.app.cli import main

    data = tmp_path / "faces.csv"
    data.write_text("emotion,pixels,Usage\n")
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            str(data),
            "--agreement",
            "1",
            "--device-pack",
            str(tmp_path / "pack"),
            "--work-dir",
            str(tmp_path / "work"),
        ],
    )
    assert result.exit_code != 0 and "gpu_train.py does not train on pairs" in result.output
    assert not (tmp_path / "pack").exists()
