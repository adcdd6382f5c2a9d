"""Test helpers: tiny random-weight checkpoints built offline for tests and the offline demo."""
