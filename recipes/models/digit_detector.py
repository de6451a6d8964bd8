"""The detector example: a tiny single-stage digit detector with two outputs, trained on calibration/digit_scenes.py.

A few strided convolutions take the 32x32 scene to a 4x4 grid of 8-pixel cells; each cell predicts 10 class scores
(sigmoid probabilities of a digit whose box holds the cell's centre) and that digit's box. The boxes are decoded
inside the model, so its outputs are final: `forward` returns `(scores, boxes)`, (1, 16, 10) and (1, 16, 4) x1, y1,
x2, y2 in pixels of the canvas. The decoding is a sigmoid, a multiply and an add with per-cell constants (no exp,
gather or grid_sample), so every op maps to the Edge TPU; it keeps each box inside the canvas by construction:
x1 = cx * (1 - s) lies in [0, cx] and x2 = cx + (32 - cx) * s in [cx, 32], for the cell's centre cx and a sigmoid s.

Two outputs, scores then boxes, are the point of the example: onnx2tf 1.29 keys its SavedModel's outputs by ONNX
position (output_0 is scores, output_1 boxes; the names are not kept), and TensorFlow lists them the other way round
in the signature's structured outputs and the TFLite model's output tensors (boxes first): only keys map them right.

`python -m recipes.models.digit_detector [OUT_DIR]` trains it (seeded, 20-25 s on 2 idle cores), writes
`digit_detector.onnx` (batch 1, input `image` (1, 1, 32, 32) NCHW in [0, 1]), which `recipes/digit_detector.yaml`
builds, and prints the float model's detections against the ground truth of the eval scenes. Nothing is downloaded.
The numpy decoding and matching below (`detect`, `agreement`) are shared with benchmarks/detector_int8_check.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from calibration import digit_scenes

DEFAULT_DIR = Path(__file__).resolve().parent
ONNX = "digit_detector.onnx"
CANVAS, GRID, CLASSES = digit_scenes.CANVAS, 4, 10
CELL = CANVAS // GRID
EPOCHS, BATCH = 12, 64
SEED = 0
SCORE_THRESHOLD, IOU_THRESHOLD = 0.3, 0.5
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes (K, 4) x1, y1, x2, y2; scores (K,); classes (K,)


def _conv(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    # Batch normalization: 12 epochs with it find 97% of the eval digits at 97% precision; without it, 24 epochs
    # reached 90% and 81%. `fuse_batch_norm` folds it into the convolution before export: the ONNX graph has Conv
    # and Relu only.
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class DigitDetector(nn.Module):
    """Input (N, 1, 32, 32) in [0, 1]; outputs scores (N, 16, 10) and boxes (N, 16, 4), cells in row-major order."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv(1, 16, stride=2),  # 16x16: the digits were 8x8 before scaling, so little is lost
            *_conv(16, 32),
            *_conv(32, 64, stride=2),  # 8x8
            *_conv(64, 64),
            *_conv(64, 64, stride=2),  # 4x4: one cell per 8x8 pixels
            *_conv(64, 64),  # a receptive field of 43 pixels: the whole digit, wherever it sits in the cell
        )
        self.classes = nn.Conv2d(64, CLASSES, 1)
        self.box = nn.Conv2d(64, 4, 1)
        # Per-cell constants of the decoding: boxes = offset + scale * sigmoid(raw), coordinate-wise.
        centres = (torch.arange(GRID, dtype=torch.float32) + 0.5) * CELL
        cy, cx = (c.reshape(-1) for c in torch.meshgrid(centres, centres, indexing="ij"))
        self.register_buffer("offset", torch.stack([cx, cy, cx, cy], dim=1)[None])  # (1, 16, 4)
        self.register_buffer("scale", torch.stack([-cx, -cy, CANVAS - cx, CANVAS - cy], dim=1)[None])

    def logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (N, 16, 10) and raw box values (N, 16, 4), before the sigmoids: training uses these."""
        features = self.features(x)
        n = x.shape[0]
        flat = [head(features).permute(0, 2, 3, 1).reshape(n, GRID * GRID, -1) for head in (self.classes, self.box)]
        return flat[0], flat[1]

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        return self.offset + self.scale * torch.sigmoid(raw)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        class_logits, raw = self.logits(x)
        return torch.sigmoid(class_logits), self.decode(raw)


def fuse_batch_norm(model: DigitDetector) -> DigitDetector:
    """The trained model (in eval mode) with each BatchNorm2d folded into the convolution before it."""
    layers = list(model.features)
    fused: list[nn.Module] = []
    for layer in layers:
        if isinstance(layer, nn.BatchNorm2d):
            fused[-1] = nn.utils.fusion.fuse_conv_bn_eval(fused[-1], layer)
        else:
            fused.append(layer)
    model.features = nn.Sequential(*fused)
    return model


def build_model() -> DigitDetector:
    return DigitDetector()


def targets(boxes: np.ndarray, classes: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per cell: one-hot classes (n, 16, 10), the box (n, 16, 4) and whether the cell answers for a digit (n, 16).

    A cell answers for every digit whose box holds the cell's centre: a box of 10 pixels or more holds at least one
    of the centres 8 pixels apart, the decoding can reach the box from there (x1 <= cx <= x2), and all those cells
    learn the same box, so non-maximum suppression merges their detections. Boxes of a scene never overlap, so no
    cell answers for two digits."""
    centres = (np.arange(GRID * GRID)[:, None] // [GRID, 1] % GRID + 0.5) * CELL  # (16, 2) y, x, as in the model
    cy, cx = centres[:, 0], centres[:, 1]
    # inside[scene, slot, cell]; padded slots (class -1, box -1) hold no centre.
    inside = (
        (boxes[..., 0, None] < cx)
        & (cx < boxes[..., 2, None])
        & (boxes[..., 1, None] < cy)
        & (cy < boxes[..., 3, None])
    )
    scene, slot, cell = np.nonzero(inside)
    one_hot = np.zeros((len(boxes), GRID * GRID, CLASSES), np.float32)
    cell_boxes = np.zeros((len(boxes), GRID * GRID, 4), np.float32)
    one_hot[scene, cell, classes[scene, slot]] = 1
    cell_boxes[scene, cell] = boxes[scene, slot]
    return torch.from_numpy(one_hot), torch.from_numpy(cell_boxes), torch.from_numpy(inside.any(axis=1))


def images(x: np.ndarray) -> torch.Tensor:
    """Stored NHWC uint8 scenes as the model's NCHW float input in [0, 1] (the recipe's scale of 1/255)."""
    return torch.from_numpy(x.astype(np.float32).transpose(0, 3, 1, 2) / 255.0)


def train(out_dir: Path = DEFAULT_DIR, data_dir: Path = digit_scenes.DEFAULT_DIR) -> Path:
    if not (data_dir / "train.npz").exists():
        digit_scenes.write_scenes(data_dir)
    torch.manual_seed(SEED)
    with np.load(data_dir / "train.npz") as data:
        x = images(data["x"])
        one_hot, cell_boxes, positive = targets(data["boxes"], data["classes"])
    model = build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    steps_per_epoch = -(-len(x) // BATCH)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, EPOCHS * steps_per_epoch)
    order = torch.Generator().manual_seed(SEED)
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(x), generator=order).split(BATCH):
            class_logits, raw = model.logits(x[batch])
            mask = positive[batch]
            # What the scores are: independent per-class probabilities (sigmoid), mostly negatives, as in any dense
            # detector; summed over classes, averaged over cells.
            loss = nn.functional.binary_cross_entropy_with_logits(class_logits, one_hot[batch]) * CLASSES
            # Which digit: softmax cross-entropy over the cells that answer for one. The sigmoid loss alone
            # learns "digit here" long before it tells a 3 from a 5.
            loss += nn.functional.cross_entropy(class_logits[mask], one_hot[batch][mask].argmax(-1))
            # Where: L1 box error in cells (doubled: IoU 0.5 needs corners within a pixel or two), where a digit is.
            loss += 2 * nn.functional.l1_loss(model.decode(raw)[mask] / CELL, cell_boxes[batch][mask] / CELL)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return export(fuse_batch_norm(model.eval()), out_dir / ONNX)


def export(model: DigitDetector, path: Path) -> Path:
    """The model as ONNX at batch 1 (the Edge TPU's), outputs named scores and boxes in that order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp.{path.name}")
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, CANVAS, CANVAS),),
        tmp,
        input_names=["image"],
        output_names=["scores", "boxes"],
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------------- decoding
# The same rules as ckit's `boxes_scores` detection decoder (compiler_kit/compare/tasks.py), written again here so
# the example's numbers do not depend on the code they check: per cell the best class and its score, kept at or
# above the score threshold, greedy per-class NMS (a box goes when a better one of its class overlaps it with IoU
# above the threshold), and detections matched greedily by falling score, same class, IoU at or above the threshold.


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one x1, y1, x2, y2 box with each of `others` (k, 4)."""
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    union = (box[2] - box[0]) * (box[3] - box[1]) + (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return width * height / np.maximum(union - width * height, 1e-9)


def detect(
    scores: np.ndarray,
    boxes: np.ndarray,
    score_threshold: float = SCORE_THRESHOLD,
    iou_threshold: float = IOU_THRESHOLD,
) -> Detections:
    """One image's detections from scores (N, C) and boxes (N, 4): boxes (K, 4), scores (K,), classes (K,)."""
    best, label = scores.max(axis=1), scores.argmax(axis=1)
    order = np.nonzero(best >= score_threshold)[0]
    order = order[np.argsort(-best[order], kind="stable")]
    kept = []
    while order.size:
        first, rest = order[0], order[1:]
        kept.append(first)
        order = rest[(label[rest] != label[first]) | (iou(boxes[first], boxes[rest]) <= iou_threshold)]
    kept_cells = np.asarray(kept, dtype=np.int64)
    return boxes[kept_cells], best[kept_cells], label[kept_cells]


def match(reference: Detections, candidate: Detections, iou_threshold: float = IOU_THRESHOLD) -> list[float]:
    """IoUs of the candidate detections (by falling score) that each take the free reference detection of their
    class overlapping them most, when that IoU is at least the threshold."""
    free = np.ones(len(reference[0]), dtype=bool)
    matched = []
    for i in np.argsort(-candidate[1], kind="stable"):
        overlaps = np.where(free & (reference[2] == candidate[2][i]), iou(candidate[0][i], reference[0]), -1.0)
        if len(overlaps) and overlaps.max() >= iou_threshold:
            free[overlaps.argmax()] = False
            matched.append(float(overlaps.max()))
    return matched


def agreement(reference: list[Detections], candidate: list[Detections]) -> dict[str, float]:
    """Recall, precision and mean matched IoU of `candidate` against `reference`, pooled over all images."""
    matches = [match(r, c) for r, c in zip(reference, candidate, strict=True)]
    matched = sum(map(len, matches))
    return {
        "recall": matched / max(sum(len(r[0]) for r in reference), 1),
        "precision": matched / max(sum(len(c[0]) for c in candidate), 1),
        "mean_matched_iou": float(np.mean([v for m in matches for v in m])) if matched else float("nan"),
    }


def ground_truth(boxes: np.ndarray, classes: np.ndarray) -> list[Detections]:
    """A scene archive's boxes (n, 2, 4) and classes (n, 2) (-1 where absent) as detections of score 1."""
    return [(b[c >= 0], np.ones(int((c >= 0).sum())), c[c >= 0]) for b, c in zip(boxes, classes, strict=True)]


def evaluate(onnx_path: Path, data_dir: Path = digit_scenes.DEFAULT_DIR) -> dict[str, float]:
    """The exported model (onnxruntime) on the eval scenes, against their ground truth."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with np.load(data_dir / "eval.npz") as data:
        x, truth = images(data["x"]).numpy(), ground_truth(data["boxes"], data["classes"])
    found = []
    for sample in x:
        scores, boxes = session.run(["scores", "boxes"], {"image": sample[None]})
        found.append(detect(scores[0], boxes[0]))
    return agreement(truth, found)


if __name__ == "__main__":
    onnx_path = train(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR)
    print(f"onnx     {onnx_path}")
    quality = evaluate(onnx_path)
    print(
        f"float model on the eval scenes against their ground truth (score >= {SCORE_THRESHOLD}, IoU >= "
        f"{IOU_THRESHOLD}): recall {quality['recall']:.3f}, precision {quality['precision']:.3f}, mean IoU of the "
        f"matches {quality['mean_matched_iou']:.3f}"
    )
