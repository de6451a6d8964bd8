"""Benchmarks of ckit against the bare work it wraps: `make bench` runs `python -m benchmarks.run`."""
