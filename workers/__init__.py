"""Face and emotion workers: a consumer group on every camera's frame stream."""
