"""Data loaders: calibration and verification samples, seeded, hashed and streamed."""

from compiler_kit.data.dataset import Dataset, open_dataset

__all__ = ["Dataset", "open_dataset"]
