"""The tracker stage: results in seq order, stable track ids, smoothing and statistics, per camera."""
