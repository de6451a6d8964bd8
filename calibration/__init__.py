"""The example data sets, written from data that ships inside packages (nothing is downloaded)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np


def save_npz(path: Path, **arrays: np.ndarray) -> Path:
    """Write an archive under its final name only once it is complete: an interrupted `make data` leaves no
    half-written file for make (or a test) to take as done."""
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return path


def main(write: Callable[[Path], dict[str, Path]], default_dir: Path) -> None:
    """`python -m calibration.<set> [OUT_DIR]`: write the set's splits and print where they went."""
    for part, path in write(Path(sys.argv[1]) if len(sys.argv) > 1 else default_dir).items():
        print(f"{part:12s} {path}")
