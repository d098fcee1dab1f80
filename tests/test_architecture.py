"""The report's CNN-LSTM, layer for layer."""

import numpy as np
from fervi.training.architectures import build


def test_cnn_lstm_parameter_counts():
    model = build("cnn_lstm")
    assert model.count_params() == 457_863
    assert sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) == 832
    assert model.input_shape == (None, 48, 48, 1) and model.output_shape == (None, 7)
    kinds = [layer.__class__.__name__ for layer in model.layers]
    assert kinds.count("Conv2D") == 5 and kinds.count("LSTM") == 2 and kinds.count("MaxPooling2D") == 3
