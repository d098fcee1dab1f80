"""The live worker stage: a consumer group on every camera's frame stream (detect, crop, classify)."""
