"""Training for labels that do not swing with the framing: each face is shown in two framings at once.

A live face's crop moves with the detector's box from frame to frame, and a user's margin may differ from
ours; a classifier that labels two framings of one face differently makes labels flicker. `--agreement W`
trains on pairs: every batch holds two views of the same faces (two crop margins around the detector's box,
or its dataset crop; each mirrored at random), the first half of the batch one view, the second half the
other, row for row. The loss is the cross-entropy of both views plus W times the Jensen-Shannon divergence
between the two predictions (as AugMix does for its augmentations), so the model is taught the label and
taught to give it whatever the framing.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

# Crop margins the training faces are cut at around the detector's box, as offsets from the workers' margin.
MARGIN_OFFSETS = (-0.1, -0.05, 0.05, 0.1)


@keras.saving.register_keras_serializable(package="fervi")
class CrossEntropyWithAgreement(keras.losses.Loss):
    """Per face: cross-entropy + `weight` x JS divergence between the face's two views.

    The batch must hold two views of the same faces: rows i and i + n/2 are one face. A batch that holds
    every face twice in the same view (validation: `paired_eval_batches`) has no divergence, so its loss is
    the cross-entropy alone."""

    def __init__(self, weight: float = 1.0, label_smoothing: float = 0.0, name: str = "ce_with_agreement", **kw):
        super().__init__(name=name, **kw)
        self.weight = float(weight)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        cross_entropy = keras.losses.categorical_crossentropy(y_true, y_pred, label_smoothing=self.label_smoothing)
        half = tf.shape(y_pred)[0] // 2
        first, second = y_pred[:half], y_pred[half:]
        js = js_divergence(first, second)
        return cross_entropy + self.weight * tf.concat([js, js], axis=0)

    def get_config(self):
        return {**super().get_config(), "weight": self.weight, "label_smoothing": self.label_smoothing}


def js_divergence(p, q, eps: float = 1e-7):
    """Jensen-Shannon divergence (nats) between rows of two probability matrices."""
    mean = (p + q) / 2
    log_mean = tf.math.log(mean + eps)
    kl_p = tf.reduce_sum(p * (tf.math.log(p + eps) - log_mean), axis=1)
    kl_q = tf.reduce_sum(q * (tf.math.log(q + eps) - log_mean), axis=1)
    return (kl_p + kl_q) / 2


class PairedViews(keras.utils.PyDataset):
    """Batches of two views per face: `views` (K, N, 48, 48) holds every training face in K framings, row for
    row; each batch draws two framings per face (they may be the same), mirrors each at random and, with
    `augmenter`, augments each. `index` lists the (over-sampled) rows of one epoch, shuffled every epoch."""

    def __init__(
        self, views: np.ndarray, labels: np.ndarray, index: np.ndarray, batch_size: int, seed: int, augmenter=None, **kw
    ):
        from .augment import as_targets

        super().__init__(**kw)
        if views.ndim != 4 or views.shape[1] != len(labels):
            raise ValueError(f"views {views.shape} do not match {len(labels)} labels")
        self.views, self.index, self.batch_size, self.augmenter = views, index, batch_size, augmenter
        self.one_hot = as_targets(labels)  # label ids or (N, 7) vote distributions
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(index)

    def __len__(self) -> int:
        return len(self.order) // self.batch_size

    def __getitem__(self, i: int):
        rows = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        draw = self.rng.integers(0, len(self.views), (2, len(rows)))
        x = np.concatenate([self.views[draw[0], rows], self.views[draw[1], rows]])
        mirror = self.rng.random(len(x)) < 0.5
        x = np.where(mirror[:, None, None], x[:, :, ::-1], x).astype(np.float32)[..., None]
        if self.augmenter is not None:
            x = np.clip(self.augmenter(x, training=True), 0.0, 255.0)
        return x, np.concatenate([self.one_hot[rows], self.one_hot[rows]])

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(self.index)


def paired_eval_batches(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """Validation for a model compiled with `CrossEntropyWithAgreement`: the usual validation batches
    (`augment.eval_pipeline`) with every face twice, in the same view, so the loss is the plain cross-entropy
    and accuracy is the faces' accuracy."""
    from .augment import eval_pipeline

    return eval_pipeline(images, labels, batch_size).map(lambda x, y: (tf.concat([x, x], 0), tf.concat([y, y], 0)))
