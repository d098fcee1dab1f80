"""The trained emotion classifier that FERVI ships (Keras, TFLite, model card); see MODEL_CARD.md."""
