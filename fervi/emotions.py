"""The seven emotions FERVI predicts, in the label order of FER-2013 (0 angry ... 6 neutral)."""

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_EMOTIONS = len(EMOTIONS)
FACE_SIZE = 48  # classifier input: 48x48 grayscale
