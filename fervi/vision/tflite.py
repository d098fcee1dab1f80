"""One place that picks the TFLite interpreter: LiteRT (`ai-edge-litert`) when installed, else `tf.lite`."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any


def interpreter_class() -> Any:  # LiteRT and tf.lite ship no types
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        Interpreter = tf.lite.Interpreter
    return Interpreter


@contextlib.contextmanager
def _native_info_hidden() -> Iterator[None]:
    """TFLite's C++ runtime prints 'INFO: Created TensorFlow Lite XNNPACK delegate' straight to stderr (no
    setting turns it off), outside FERVI's log format: unless logging at DEBUG, stderr is pointed at
    /dev/null while an interpreter is made. A failure still raises its Python exception."""
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def load_interpreter(model: bytes, threads: int = 1) -> Any:
    with _native_info_hidden():
        interpreter = interpreter_class()(model_content=model, num_threads=threads)
        interpreter.allocate_tensors()
    return interpreter
