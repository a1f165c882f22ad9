"""Metric loggers: the contract and the built-in JSONL logger."""
