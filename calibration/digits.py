"""The digits data set: scikit-learn's bundled 8x8 handwritten digits, upsampled to 16x16, split three ways.

Written as uint8 images (0-255) so recipes show real preprocessing (scale by 1/255). The split is stratified
and seeded, and the three parts are disjoint:
- `train.npz`       the example models are trained on it;
- `calibration.npz` representative samples for int8 calibration: training-distribution data, never evaluation;
- `eval.npz`        held out: every runner is verified on it.
Each archive holds `x` (count, 16, 16, 1) uint8 and `y` (count,) int64.

Run `python -m calibration.digits [OUT_DIR]` (the Makefile does); the output is byte-for-byte reproducible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calibration import main, save_npz

DEFAULT_DIR = Path(__file__).resolve().parent / "digits"
SIDE = 16
SEED = 0
SPLITS = {"train": 0.6, "calibration": 0.2, "eval": 0.2}


def upsampled_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as (count, 16, 16, 1) uint8 images, bilinearly upsampled, and their labels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = [
        np.asarray(Image.fromarray((image * (255 / 16)).astype(np.uint8)).resize((SIDE, SIDE), Image.BILINEAR))
        for image in digits.images
    ]
    return np.stack(images)[..., None], digits.target.astype(np.int64)


def split_indices(labels: np.ndarray, seed: int = SEED) -> dict[str, np.ndarray]:
    """Stratified, disjoint index sets for the train, calibration and eval parts."""
    from sklearn.model_selection import train_test_split

    everything = np.arange(len(labels))
    train, rest = train_test_split(everything, train_size=SPLITS["train"], stratify=labels, random_state=seed)
    calibration, evaluation = train_test_split(rest, test_size=0.5, stratify=labels[rest], random_state=seed)
    return {"train": np.sort(train), "calibration": np.sort(calibration), "eval": np.sort(evaluation)}


def write_splits(out_dir: Path = DEFAULT_DIR) -> dict[str, Path]:
    images, labels = upsampled_digits()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for part, indices in split_indices(labels).items():
        paths[part] = save_npz(out_dir / f"{part}.npz", x=images[indices], y=labels[indices])
    return paths


if __name__ == "__main__":
    main(write_splits, DEFAULT_DIR)
