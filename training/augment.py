"""Training-split augmentation and the tf.data pipelines that feed the model.

Augmentation runs inside the training pipeline only; evaluation pipelines never see it. The ranges are
chosen for real footage: faces from a detector are off-centre, tilted, scaled and lit unlike FER-2013.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from fervi.emotions import NUM_EMOTIONS


def augmenter(seed: int, mode: str = "full") -> keras.Sequential:
    """`full`: flip, rotation, zoom, shift, contrast and brightness; `flip`: mirror images only (a gentle
    fine-tune keeps the distribution the model was trained on)."""
    if mode == "flip":
        return keras.Sequential([keras.layers.RandomFlip("horizontal", seed=seed)], name="augment")
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(8 / 360, fill_mode="reflect", seed=seed + 1),
            keras.layers.RandomZoom((-0.08, 0.08), fill_mode="reflect", seed=seed + 2),
            keras.layers.RandomTranslation(0.08, 0.08, fill_mode="reflect", seed=seed + 3),
            keras.layers.RandomContrast(0.2, seed=seed + 4),
            keras.layers.RandomBrightness(0.15, value_range=(0, 255), seed=seed + 5),
        ],
        name="augment",
    )


def as_model_input(images: np.ndarray) -> np.ndarray:
    """(N, 48, 48) uint8 faces -> (N, 48, 48, 1) float32 in 0..255, the model's input."""
    return images.astype(np.float32)[..., None]


def train_pipeline(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    augment: str = "full",
    alternate: np.ndarray | None = None,
    alternate_share: float = 0.5,
) -> tf.data.Dataset:
    """Shuffled, augmented batches. `labels`: label ids, or (N, 7) target distributions (crowd votes). With
    `alternate` (the same faces framed another way, row for row) each face is shown in that framing with
    probability `alternate_share`, drawn again every epoch."""
    one_hot = as_targets(labels)
    if alternate is None:
        data = tf.data.Dataset.from_tensor_slices((images[..., None], one_hot))
    else:
        if alternate.shape != images.shape:
            raise ValueError(f"alternate framing {alternate.shape} does not match the faces {images.shape}")
        pick = tf.random.Generator.from_seed(seed)
        data = tf.data.Dataset.from_tensor_slices((images[..., None], alternate[..., None], one_hot)).map(
            lambda x, alt, y: (tf.where(pick.uniform([]) < alternate_share, alt, x), y)
        )
    data = data.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    data = data.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    if augment != "none":
        layer = augmenter(seed, augment)
        data = data.map(
            lambda x, y: (tf.clip_by_value(layer(x, training=True), 0.0, 255.0), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return data.prefetch(tf.data.AUTOTUNE)


def as_targets(labels: np.ndarray) -> np.ndarray:
    """Label ids -> one-hot rows; (N, 7) distributions (crowd votes) pass as they are."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return labels.astype(np.float32)
    return np.eye(NUM_EMOTIONS, dtype=np.float32)[labels]


def eval_pipeline(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """Batches for evaluation: `labels` as label ids or (N, 7) target distributions."""
    one_hot = as_targets(labels)
    return tf.data.Dataset.from_tensor_slices((as_model_input(images), one_hot)).batch(batch_size)
