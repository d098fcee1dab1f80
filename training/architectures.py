"""Classifier architectures by name. `cnn_lstm` is the 2023 report's model, layer for layer (457,863 params).

The model takes 48x48x1 float faces with values 0..255 and scales them itself, so the Keras model, the
TFLite export and the workers can never disagree about input scaling.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from fervi.emotions import FACE_SIZE, NUM_EMOTIONS


def _conv_bn_relu(x, filters: int, padding: str, name: str):
    x = layers.Conv2D(filters, 3, padding=padding, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def cnn_lstm(unroll: bool = True) -> keras.Model:
    """The report's CNN-LSTM. Unrolled LSTMs train faster on CPU here and convert to TFLite as they are."""
    inputs = keras.Input((FACE_SIZE, FACE_SIZE, 1), name="face")
    x = layers.Rescaling(1.0 / 255, name="scale")(inputs)
    x = _conv_bn_relu(x, 32, "valid", "block1")  # 46x46
    x = _conv_bn_relu(x, 64, "same", "block2")
    x = layers.MaxPooling2D(2, name="pool1")(x)  # 23x23
    x = _conv_bn_relu(x, 64, "valid", "block3")  # 21x21
    x = _conv_bn_relu(x, 128, "same", "block4")
    x = layers.MaxPooling2D(2, name="pool2")(x)  # 10x10
    x = _conv_bn_relu(x, 128, "valid", "block5")  # 8x8
    x = layers.MaxPooling2D(2, name="pool3")(x)  # 4x4x128
    x = layers.Reshape((16, 128), name="to_sequence")(x)
    x = layers.LSTM(128, unroll=unroll, name="lstm1")(x)
    x = layers.Reshape((2, 64), name="to_pairs")(x)
    x = layers.LSTM(64, unroll=unroll, name="lstm2")(x)
    x = layers.Dense(200, activation="relu", name="dense")(x)
    x = layers.Dropout(0.6, name="dropout")(x)
    outputs = layers.Dense(NUM_EMOTIONS, activation="softmax", name="emotion")(x)
    return keras.Model(inputs, outputs, name="cnn_lstm")


ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {"cnn_lstm": cnn_lstm}


def build(name: str, unroll: bool = True) -> keras.Model:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name](unroll=unroll)
