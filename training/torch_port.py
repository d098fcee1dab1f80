"""Weights between the Keras CNN-LSTM (`architectures.cnn_lstm`) and its PyTorch mirror (`gpu_train.CnnLstm`).

The lent GPU machines carry PyTorch, not TensorFlow, so a run there trains the mirror and this module turns
its weights (a plain name -> array mapping, no torch needed here) into the Keras model the product exports.
Layouts: Conv2D OIHW -> HWIO; Dense (out, in) -> (in, out); LSTM gates are i, f, g/c, o in both, the
kernels are transposed and PyTorch's two biases add up to Keras's one; BatchNorm uses epsilon 1e-3 on both.
"""

from __future__ import annotations

import numpy as np

CONV_BLOCKS = ("block1", "block2", "block3", "block4", "block5")
LSTMS = ("lstm1", "lstm2")
DENSES = ("dense", "emotion")


def keras_layer_weights(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """PyTorch state (name -> array) -> {Keras layer name: weights in `layer.set_weights` order}."""
    out: dict[str, list[np.ndarray]] = {}
    for block in CONV_BLOCKS:
        out[f"{block}_conv"] = [state[f"{block}.conv.weight"].transpose(2, 3, 1, 0), state[f"{block}.conv.bias"]]
        out[f"{block}_bn"] = [state[f"{block}.bn.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
    for lstm in LSTMS:
        out[lstm] = [
            state[f"{lstm}.weight_ih_l0"].T,
            state[f"{lstm}.weight_hh_l0"].T,
            state[f"{lstm}.bias_ih_l0"] + state[f"{lstm}.bias_hh_l0"],
        ]
    for dense in DENSES:
        out[dense] = [state[f"{dense}.weight"].T, state[f"{dense}.bias"]]
    return {name: [np.ascontiguousarray(w, dtype=np.float32) for w in weights] for name, weights in out.items()}


def torch_state(layers: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    """The inverse: Keras layer weights -> PyTorch state names (the LSTM bias goes to `bias_ih`)."""
    state: dict[str, np.ndarray] = {}
    for block in CONV_BLOCKS:
        kernel, bias = layers[f"{block}_conv"]
        state[f"{block}.conv.weight"] = kernel.transpose(3, 2, 0, 1)
        state[f"{block}.conv.bias"] = bias
        for key, value in zip(("weight", "bias", "running_mean", "running_var"), layers[f"{block}_bn"], strict=True):
            state[f"{block}.bn.{key}"] = value
    for lstm in LSTMS:
        kernel, recurrent, bias = layers[lstm]
        state[f"{lstm}.weight_ih_l0"] = kernel.T
        state[f"{lstm}.weight_hh_l0"] = recurrent.T
        state[f"{lstm}.bias_ih_l0"] = bias
        state[f"{lstm}.bias_hh_l0"] = np.zeros_like(bias)
    for dense in DENSES:
        kernel, bias = layers[dense]
        state[f"{dense}.weight"] = kernel.T
        state[f"{dense}.bias"] = bias
    return {name: np.ascontiguousarray(w, dtype=np.float32) for name, w in state.items()}


def layers_of(model) -> dict[str, list[np.ndarray]]:
    """A Keras CNN-LSTM's weights by layer name (the layers `keras_layer_weights` fills)."""
    names = [f"{b}_{kind}" for b in CONV_BLOCKS for kind in ("conv", "bn")] + list(LSTMS) + list(DENSES)
    return {name: [np.asarray(w) for w in model.get_layer(name).get_weights()] for name in names}


def load_into(model, state: dict[str, np.ndarray]) -> None:
    """Set a Keras CNN-LSTM's weights from a PyTorch mirror's state; shapes are checked by Keras."""
    for name, weights in keras_layer_weights(state).items():
        model.get_layer(name).set_weights(weights)
