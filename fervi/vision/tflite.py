"""One place that picks the TFLite interpreter: LiteRT (`ai-edge-litert`) when installed, else `tf.lite`."""

from __future__ import annotations

import warnings


def interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        Interpreter = tf.lite.Interpreter
    return Interpreter


def load_interpreter(model: bytes, threads: int = 1):
    return interpreter_class()(model_content=model, num_threads=threads)
