"""The Flask prediction service and its serving machinery (runtime, batcher, model cache, champion
follower, shadow)."""
