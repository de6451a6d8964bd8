"""Task metrics: comparisons that know what an output means (classes, masks, token sequences, boxes, ...).

Generic metrics (metrics.py) compare numbers; a task metric compares the decisions made from them, which is what a
user of the model sees: the same class, the same mask, the same text, the same boxes. A task function takes
`reference` and `candidate` mapping EVERY output name of the model to its (samples, ...) array (a detection decoder
may need several outputs), the `output` the task is attached to, a TaskSpec and labels or None. Per-sample shapes
have no batch axis: `spec.channel_axis` indexes one sample.

Metric names are public (report.json, gates `min_<name>` / `max_<name>`): TASK_METRIC_NAMES lists them per kind and
every result holds each name of its kind, None where it is undefined. A name that is also a generic metric
(top1_agreement, accuracy_*, cosine, rmse, max_abs_error) has the generic metric's value.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce

import numpy as np

from compiler_kit.compare.metrics import accuracy, per_sample_cosine, top1

Outputs = dict[str, np.ndarray]
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes (K, 4) x1 y1 x2 y2, scores (K,), classes (K,) int
# Detections of every sample at once: sample index (K,), boxes (K, 4), scores (K,), classes (K,).
Candidates = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

TASK_METRIC_NAMES: dict[str, tuple[str, ...]] = {
    "classification": (
        "top1_agreement",
        "top5_agreement",
        "accuracy_reference",
        "accuracy_candidate",
        "accuracy_drop_pp",
    ),
    "map": ("pixel_agreement", "iou", "iou_min", "samples_iou_below_0_5"),
    "sequence": ("step_agreement", "exact_match", "edit_distance", "normalized_edit_distance"),
    "detection": ("recall", "precision", "f1", "mean_matched_iou", "detections_reference", "detections_candidate"),
    "regression": ("mae", "rmse", "max_abs_error", "bias"),
    "embedding": ("cosine", "nearest_neighbour_agreement"),
}

# Nearest-neighbour agreement compares all pairs; past this many samples it runs on a seeded subset.
NN_SUBSET = 2000
# Samples per batch of the vectorised edit distance: bounds its working arrays to a few MB.
EDIT_DISTANCE_CHUNK = 4096
BUILTIN_DECODERS = ("anchor_free", "boxes_scores")
PERCENTILES = (0, 1, 5, 50, 95, 100)


@dataclass(frozen=True)
class TaskSpec:
    """What one output means, and the few knobs its task needs."""

    kind: str
    channel_axis: int = -1  # axis of classes/channels in ONE sample (no batch axis), e.g. 0 for CHW maps
    threshold: float = 0.5  # map: foreground is value > threshold for single-channel maps
    ctc_blank: int | None = None  # sequence: CTC blank class index (negative counts from the end); None = no CTC
    decoder: str = "anchor_free"  # detection: "anchor_free", "boxes_scores", or "package.module:function"
    scores_output: str | None = None  # detection, boxes_scores: the output holding the class scores
    score_threshold: float = 0.3  # detection: a detection is kept when its score >= this
    iou_threshold: float = 0.5  # detection: match threshold (IoU >= it) AND NMS threshold (suppress IoU > it)
    units: str = ""  # regression: the output's physical units, for the report to label mae/rmse/...; no math uses it


@dataclass(frozen=True)
class TaskMetrics:
    task: str  # the task kind
    metrics: dict[str, float | None]  # aggregate metrics over all samples (JSON-ready floats)
    per_sample: np.ndarray  # shape (samples,), float64: the task's primary per-sample score
    per_sample_metric: str  # name of that score, e.g. "iou", "step_agreement", "abs_error_mean"
    higher_is_better: bool  # direction of per_sample (worst samples = lowest when True)


TaskFn = Callable[[Outputs, Outputs, str, TaskSpec, np.ndarray | None], TaskMetrics]
TASKS: dict[str, TaskFn] = {}


def register(kind: str) -> Callable[[TaskFn], TaskFn]:
    def add(task: TaskFn) -> TaskFn:
        TASKS[kind] = task
        return task

    return add


def _json(value: float | None) -> float | None:
    """A plain float for JSON; None for None, NaN and infinities, which JSON cannot hold."""
    return None if value is None or not np.isfinite(value) else float(value)


def _result(
    kind: str, metrics: dict[str, float | None], per_sample: np.ndarray, name: str, higher_is_better: bool
) -> TaskMetrics:
    # Keyed by TASK_METRIC_NAMES, so a report always has the same keys for a kind, in the same order.
    values = {metric: _json(metrics[metric]) for metric in TASK_METRIC_NAMES[kind]}
    return TaskMetrics(kind, values, np.asarray(per_sample, np.float64), name, higher_is_better)


def _axis(ndim: int, axis: int) -> int:
    """`axis` of one sample of `ndim` axes, made non-negative."""
    if not -ndim <= axis < ndim:
        raise ValueError(f"channel_axis {axis} is out of range for a per-sample shape of {ndim} axes")
    return axis % ndim


def _channels_last(x: np.ndarray, channel_axis: int) -> np.ndarray:
    """(samples, ..., C): one sample's channel axis moved to the end (a view)."""
    return np.moveaxis(x, _axis(x.ndim - 1, channel_axis) + 1, -1)


def infer_task(per_sample_shape: tuple[int, ...], channel_axis: int = -1) -> str:
    """The default task kind of an output from one sample's shape (no batch axis).

    Rule, first that applies:
      1. every axis of size 1, or a scalar: "regression";
      2. a 2-D shape with one axis of size 1 counts as 1-D of the other, so (1, C) is (C,);
      3. 1-D (C,): "classification";
      4. 2-D (T, C), both > 1: "sequence";
      5. 3-D or more: "map", unless every axis but `channel_axis` has size 1 (a (1, 1, C) head has no spatial
         extent): then "classification".
    It is only a default: a (H, W) single-channel map reads as a sequence here, so the report states the inferred
    kind and a recipe can set it.
    """
    shape = tuple(int(d) for d in per_sample_shape)
    if all(d == 1 for d in shape):
        return "regression"
    if len(shape) == 2 and 1 in shape:
        shape = (max(shape),)
    if len(shape) == 1:
        return "classification"
    if len(shape) == 2:
        return "sequence"
    axis = _axis(len(shape), channel_axis)
    spatial = shape[:axis] + shape[axis + 1 :]
    return "classification" if all(d == 1 for d in spatial) else "map"


# ---------------------------------------------------------------------------------------------- classification


@register("classification")
def _classification(reference: Outputs, candidate: Outputs, output: str, spec: TaskSpec, labels) -> TaskMetrics:
    """Flattened per sample: the class axis is all of it, like the generic top-1 metrics."""
    ref, cand = reference[output], candidate[output]
    ref = ref.reshape(len(ref), -1)
    cand = cand.reshape(len(cand), -1)
    ref_top1 = top1(ref)
    agree = (top1(cand) == ref_top1).astype(np.float64)
    # Top-k by rank: the reference's class is in the candidate's top k when fewer than k classes score strictly
    # higher. Ties count in its favour, so the result does not hang on how a sort breaks them.
    k = min(5, ref.shape[1])
    at_reference = np.take_along_axis(cand, ref_top1[:, None], axis=1)
    top5 = (cand > at_reference).sum(axis=1) < k
    metrics: dict[str, float | None] = {
        "top1_agreement": agree.mean(),
        "top5_agreement": top5.mean(),
        "accuracy_reference": None,
        "accuracy_candidate": None,
        "accuracy_drop_pp": None,
    }
    if labels is not None:
        acc_ref, acc_cand = accuracy(ref, labels), accuracy(cand, labels)
        metrics |= {
            "accuracy_reference": acc_ref,
            "accuracy_candidate": acc_cand,
            "accuracy_drop_pp": 100 * (acc_ref - acc_cand),
        }
    return _result("classification", metrics, agree, "top1_agreement", True)


# ------------------------------------------------------------------------------------------------------- map


def _mean_class_iou(ref: np.ndarray, cand: np.ndarray, classes: int) -> np.ndarray:
    """Per sample, the mean IoU over the classes present in either (samples, pixels) class map."""
    n = len(ref)
    # One bincount over sample * classes + class counts every (sample, class) pair at once.
    offset = np.arange(n)[:, None] * classes
    ref_index, cand_index = ref + offset, cand + offset

    def count(index: np.ndarray) -> np.ndarray:
        return np.bincount(index.ravel(), minlength=n * classes).reshape(n, classes)

    inter = count(ref_index[ref == cand])
    union = count(ref_index) + count(cand_index) - inter
    present = union > 0  # every sample has a pixel, so at least one class is present
    return np.where(present, inter / np.maximum(union, 1), 0.0).sum(axis=1) / present.sum(axis=1)


@register("map")
def _map(reference: Outputs, candidate: Outputs, output: str, spec: TaskSpec, labels) -> TaskMetrics:
    """A dense map. With 3 or more axes per sample, `spec.channel_axis` is the class axis: above size 1 each pixel
    takes its argmax class and IoU is the mean over the classes present in reference or candidate; of size 1 (and
    with 2 axes or fewer, which have no channel axis) foreground is value > `spec.threshold` and IoU is the masks'
    (1.0 when both are empty: nothing to find and nothing found)."""
    ref, cand = reference[output], candidate[output]
    n = len(ref)
    classes = ref.shape[_axis(ref.ndim - 1, spec.channel_axis) + 1] if ref.ndim >= 4 else 1
    if classes > 1:
        ref_class = _channels_last(ref, spec.channel_axis).argmax(axis=-1).reshape(n, -1)
        cand_class = _channels_last(cand, spec.channel_axis).argmax(axis=-1).reshape(n, -1)
        pixel = np.mean(ref_class == cand_class, axis=1)
        iou = _mean_class_iou(ref_class, cand_class, classes)
    else:
        ref_mask = ref.reshape(n, -1) > spec.threshold
        cand_mask = cand.reshape(n, -1) > spec.threshold
        pixel = np.mean(ref_mask == cand_mask, axis=1)
        inter = np.count_nonzero(ref_mask & cand_mask, axis=1)
        union = np.count_nonzero(ref_mask | cand_mask, axis=1)
        iou = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    metrics = {
        "pixel_agreement": pixel.mean(),
        "iou": iou.mean(),
        "iou_min": iou.min() if n else None,
        "samples_iou_below_0_5": float(np.count_nonzero(iou < 0.5)),
    }
    return _result("map", metrics, iou, "iou", True)


# -------------------------------------------------------------------------------------------------- sequence


def ctc_greedy(steps: np.ndarray, blank: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy CTC decoding of (samples, T) per-step classes: collapse repeats, then drop the blank.

    Returns the decoded sequences left-aligned in a (samples, T) array padded with -1, and their lengths.
    """
    keep = steps != blank
    keep[:, 1:] &= steps[:, 1:] != steps[:, :-1]
    decoded = np.full(steps.shape, -1, dtype=np.int64)
    rows, _ = np.nonzero(keep)
    # A kept step's place in its sequence is the number of kept steps before it.
    decoded[rows, (np.cumsum(keep, axis=1) - 1)[keep]] = steps[keep]
    return decoded, np.count_nonzero(keep, axis=1)


def edit_distances(a: np.ndarray, a_lengths: np.ndarray, b: np.ndarray, b_lengths: np.ndarray) -> np.ndarray:
    """Levenshtein distance (fewest insertions, deletions and substitutions) of each row pair of two padded
    (samples, La), (samples, Lb) token arrays, counting only the first a_lengths / b_lengths tokens of each row.

    Vectorised over samples: one numpy step per token of `a`, so 100,000 samples cost no Python loop.
    """
    n, width = len(a), b.shape[1]
    j = np.arange(width + 1)
    row = np.tile(j, (n, 1))  # distances from a[:0] to every prefix of b
    distance = row[np.arange(n), b_lengths]  # the rows where a is empty
    for i in range(a.shape[1]):
        current = np.empty_like(row)
        current[:, 0] = i + 1
        # Deletion from the row above or substitution from its diagonal ...
        current[:, 1:] = np.minimum(row[:, 1:] + 1, row[:, :-1] + (a[:, i : i + 1] != b))
        # ... then insertions chain along the row: current[j] = min over k <= j of current[k] + (j - k).
        row = np.minimum.accumulate(current - j, axis=1) + j
        done = np.flatnonzero(a_lengths == i + 1)
        distance[done] = row[done, b_lengths[done]]
    return distance


@register("sequence")
def _sequence(reference: Outputs, candidate: Outputs, output: str, spec: TaskSpec, labels) -> TaskMetrics:
    """Per-step classes along `spec.channel_axis` (every other axis counts as steps). With `spec.ctc_blank`, the
    greedy CTC decodings are compared too, and the per-sample score is 1 - normalized edit distance (clipped at
    0), "sequence_similarity": exact match alone is too coarse to rank samples."""
    ref, cand = reference[output], candidate[output]
    n = len(ref)
    ref_steps = _channels_last(ref, spec.channel_axis).argmax(axis=-1).reshape(n, -1)
    cand_steps = _channels_last(cand, spec.channel_axis).argmax(axis=-1).reshape(n, -1)
    step = np.mean(ref_steps == cand_steps, axis=1)
    metrics: dict[str, float | None] = {
        "step_agreement": step.mean(),
        "exact_match": None,
        "edit_distance": None,
        "normalized_edit_distance": None,
    }
    if spec.ctc_blank is None:
        return _result("sequence", metrics, step, "step_agreement", True)
    classes = ref.shape[_axis(ref.ndim - 1, spec.channel_axis) + 1]
    if not -classes <= spec.ctc_blank < classes:
        raise ValueError(f"ctc_blank {spec.ctc_blank} is not a class of output {output!r}, which has {classes}")
    blank = spec.ctc_blank % classes
    ref_tokens, ref_lengths = ctc_greedy(ref_steps, blank)
    cand_tokens, cand_lengths = ctc_greedy(cand_steps, blank)
    distance = np.zeros(n, dtype=np.float64)
    # Only sequences that differ need the dynamic programme (equal -1 padding makes equal rows equal sequences);
    # chunks bound its (chunk, T) working arrays.
    differ = np.flatnonzero(np.any(ref_tokens != cand_tokens, axis=1))
    for start in range(0, len(differ), EDIT_DISTANCE_CHUNK):
        chunk = differ[start : start + EDIT_DISTANCE_CHUNK]
        width = max(ref_lengths[chunk].max(initial=0), cand_lengths[chunk].max(initial=0))
        distance[chunk] = edit_distances(
            ref_tokens[chunk, :width], ref_lengths[chunk], cand_tokens[chunk, :width], cand_lengths[chunk]
        )
    normalized = distance / np.maximum(ref_lengths, 1)
    metrics |= {
        "exact_match": np.mean(distance == 0),
        "edit_distance": distance.mean(),
        "normalized_edit_distance": normalized.mean(),
    }
    return _result("sequence", metrics, np.clip(1 - normalized, 0.0, None), "sequence_similarity", True)


# ------------------------------------------------------------------------------------------------- detection


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of x1, y1, x2, y2 boxes; 0.0 where the union is empty."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy per-class non-maximum suppression, by descending score: a box is dropped when a
    higher-scoring box of its class overlaps it with IoU > iou_threshold."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        iou = box_iou(boxes[best : best + 1], boxes[rest])[0]
        order = rest[(iou <= iou_threshold) | (classes[rest] != classes[best])]
    return np.asarray(keep, dtype=np.int64)


def _kept(sample_scores: np.ndarray, spec: TaskSpec) -> tuple[np.ndarray, np.ndarray]:
    """(sample, anchor) indices of the (samples, N) scores at or above the score threshold."""
    samples, anchors = np.nonzero(sample_scores >= spec.score_threshold)
    return samples, anchors


def _anchor_free(outputs: Outputs, output: str, spec: TaskSpec) -> Candidates:
    """YOLOv5/v8-style: one output, per sample (4+C, N) or (N, 4+C), the 4+C axis being the smaller (on a tie the
    first); rows cx, cy, w, h, then C class probabilities (no sigmoid applied). Score = max, class = argmax."""
    x = outputs[output]
    if x.ndim != 3:
        raise ValueError(
            f"anchor_free decoder: output {output!r} has per-sample shape {x.shape[1:]}, not (4+C, N) or (N, 4+C)"
        )
    if x.shape[1] > x.shape[2]:
        x = x.transpose(0, 2, 1)  # now (samples, 4+C, N), a view
    if x.shape[1] < 5:
        raise ValueError(f"anchor_free decoder: output {output!r} has no class rows after cx, cy, w, h: {x.shape[1:]}")
    # Only anchors above the threshold are gathered: the full (samples, N, 4) box array is never built.
    sample, anchor = _kept(x[:, 4:].max(axis=1), spec)
    rows = x[sample, :, anchor].astype(np.float64)  # (K, 4+C)
    cx, cy, half_w, half_h = rows[:, 0], rows[:, 1], rows[:, 2] / 2, rows[:, 3] / 2
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    return sample, boxes, rows[:, 4:].max(axis=1), rows[:, 4:].argmax(axis=1)


def _boxes_scores(outputs: Outputs, output: str, spec: TaskSpec) -> Candidates:
    """SSD-style after box decoding: `output` holds boxes (N, 4) x1, y1, x2, y2 per sample, `spec.scores_output`
    the scores (N, C) (or (N,) for one class). Score = max, class = argmax."""
    if spec.scores_output is None:
        raise ValueError("boxes_scores decoder needs scores_output: the output holding the class scores (N, C)")
    if spec.scores_output not in outputs:
        raise ValueError(
            f"boxes_scores decoder: scores_output {spec.scores_output!r} is not an output of the model "
            f"(outputs: {', '.join(outputs)})"
        )
    boxes, scores = outputs[output], outputs[spec.scores_output]
    if scores.ndim == 2:
        scores = scores[..., None]
    if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.ndim != 3 or scores.shape[:2] != boxes.shape[:2]:
        raise ValueError(
            f"boxes_scores decoder: boxes {output!r} {boxes.shape[1:]} and scores {spec.scores_output!r} "
            f"{outputs[spec.scores_output].shape[1:]} are not (N, 4) and (N, C) per sample"
        )
    sample, anchor = _kept(scores.max(axis=2), spec)
    kept_scores = scores[sample, anchor].astype(np.float64)
    return sample, boxes[sample, anchor].astype(np.float64), kept_scores.max(axis=1), kept_scores.argmax(axis=1)


def load_decoder(entry_point: str) -> Callable[[Outputs], tuple]:
    """The function named by "package.module:function" (the function part may be dotted, "module:Class.method")."""
    module_name, _, attribute = entry_point.partition(":")
    if not module_name or not attribute:
        raise ValueError(
            f"detection decoder {entry_point!r} is neither a built-in ({', '.join(BUILTIN_DECODERS)}) "
            "nor an entry point 'package.module:function'"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a user's module may fail to import in any way; all of them are a bad recipe
        raise ValueError(
            f"detection decoder {entry_point!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        function = reduce(getattr, attribute.split("."), module)
    except AttributeError as exc:
        raise ValueError(f"detection decoder {entry_point!r}: {module_name!r} has no {attribute!r}") from exc
    if not callable(function):
        raise ValueError(f"detection decoder {entry_point!r}: {attribute!r} is not callable")
    return function


def _entry_point(entry_point: str) -> Callable[[Outputs, str, TaskSpec], Candidates]:
    function = load_decoder(entry_point)

    def decode(outputs: Outputs, output: str, spec: TaskSpec) -> Candidates:
        found = []
        for i in range(len(outputs[output])):
            try:
                boxes, scores, classes = function({name: array[i] for name, array in outputs.items()})
                boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
                scores = np.asarray(scores, np.float64).reshape(-1)
                classes = np.asarray(classes).astype(np.int64).reshape(-1)
            except Exception as exc:  # the user's code: report it as a recipe error naming the decoder
                raise ValueError(
                    f"detection decoder {entry_point!r} failed on sample {i}: {type(exc).__name__}: {exc}"
                ) from exc
            if not len(boxes) == len(scores) == len(classes):
                raise ValueError(
                    f"detection decoder {entry_point!r} returned {len(boxes)} boxes, {len(scores)} scores and "
                    f"{len(classes)} classes on sample {i}"
                )
            found.append((np.full(len(boxes), i), boxes, scores, classes))
        if not found:
            return np.empty(0, np.int64), np.empty((0, 4)), np.empty(0), np.empty(0, np.int64)
        sample, boxes, scores, classes = (np.concatenate(parts) for parts in zip(*found, strict=True))
        return sample, boxes, scores, classes

    return decode


def decode_detections(
    outputs: Outputs, output: str, spec: TaskSpec, decoder: Callable[[Outputs, str, TaskSpec], Candidates] | None = None
) -> list[Detections]:
    """Per sample, (boxes, scores, classes) after the score threshold and per-class NMS. Both apply to an entry
    point's detections too (a no-op when it already applied the same ones), so reference and candidate are
    filtered alike whatever the decoder."""
    decoder = decoder or _decoder(spec)
    sample, boxes, scores, classes = decoder(outputs, output, spec)
    keep = scores >= spec.score_threshold
    sample, boxes, scores, classes = sample[keep], boxes[keep], scores[keep], classes[keep]
    order = np.argsort(sample, kind="stable")
    cuts = np.cumsum(np.bincount(sample, minlength=len(outputs[output])))[:-1]
    detections = []
    for b, s, c in zip(*(np.split(part[order], cuts) for part in (boxes, scores, classes)), strict=True):
        kept = nms(b, s, c, spec.iou_threshold)
        detections.append((b[kept], s[kept], c[kept]))
    return detections


def _decoder(spec: TaskSpec) -> Callable[[Outputs, str, TaskSpec], Candidates]:
    if spec.decoder == "anchor_free":
        return _anchor_free
    if spec.decoder == "boxes_scores":
        return _boxes_scores
    return _entry_point(spec.decoder)


def match_detections(reference: Detections, candidate: Detections, iou_threshold: float) -> np.ndarray:
    """IoUs of the matched pairs. The reference is the truth: by descending score, each candidate detection takes
    the unmatched reference detection of its class with the highest IoU, when that IoU is >= iou_threshold."""
    ref_boxes, _, ref_classes = reference
    cand_boxes, cand_scores, cand_classes = candidate
    if not len(ref_boxes) or not len(cand_boxes):
        return np.empty(0)
    iou = box_iou(cand_boxes, ref_boxes)
    iou[cand_classes[:, None] != ref_classes[None, :]] = -1.0
    free = np.ones(len(ref_boxes), dtype=bool)
    matched = []
    for i in np.argsort(-cand_scores, kind="stable"):
        row = np.where(free, iou[i], -1.0)
        j = int(row.argmax())
        if row[j] >= iou_threshold:
            free[j] = False
            matched.append(row[j])
    return np.asarray(matched, dtype=np.float64)


@register("detection")
def _detection(reference: Outputs, candidate: Outputs, output: str, spec: TaskSpec, labels) -> TaskMetrics:
    """Boxes decoded by `spec.decoder` from both sides, the candidate's matched to the reference's (see
    match_detections). Recall and precision are pooled over all samples (1.0 on an empty denominator)."""
    decoder = _decoder(spec)  # an entry point is imported once, for both sides
    ref_detections = decode_detections(reference, output, spec, decoder)
    cand_detections = decode_detections(candidate, output, spec, decoder)
    matches = [match_detections(r, c, spec.iou_threshold) for r, c in zip(ref_detections, cand_detections, strict=True)]
    n_ref = np.array([len(d[0]) for d in ref_detections], dtype=np.float64)
    n_cand = np.array([len(d[0]) for d in cand_detections], dtype=np.float64)
    n_matched = np.array([len(m) for m in matches], dtype=np.float64)
    matched, total_ref, total_cand = n_matched.sum(), n_ref.sum(), n_cand.sum()
    recall = matched / total_ref if total_ref else 1.0
    precision = matched / total_cand if total_cand else 1.0
    ious = np.concatenate(matches) if matches else np.empty(0)
    metrics = {
        "recall": recall,
        "precision": precision,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "mean_matched_iou": ious.mean() if ious.size else None,
        "detections_reference": n_ref.mean() if n_ref.size else None,
        "detections_candidate": n_cand.mean() if n_cand.size else None,
    }
    # F1 = 2 matched / (reference + candidate): 1.0 with nothing on either side, 0.0 when only one side has any.
    total = n_ref + n_cand
    f1 = np.where(total == 0, 1.0, 2 * n_matched / np.maximum(total, 1))
    return _result("detection", metrics, f1, "f1", True)


# ------------------------------------------------------------------------------------------------ regression


@register("regression")
def _regression(reference: Outputs, candidate: Outputs, output: str, spec: TaskSpec, labels) -> TaskMetrics:
    """Errors in the output's own units (`spec.units` names them for the report)."""
    ref, cand = reference[output], candidate[output]
    error = (cand.astype(np.float64) - ref).reshape(len(ref), -1)
    abs_error = np.abs(error)
    metrics = {
        "mae": abs_error.mean(),
        "rmse": np.sqrt(np.mean(error**2)),
        "max_abs_error": abs_error.max(),
        "bias": error.mean(),
    }
    return _result("regression", metrics, abs_error.mean(axis=1), "abs_error_mean", False)


# ------------------------------------------------------------------------------------------------- embedding


def _nearest(embeddings: np.ndarray) -> np.ndarray:
    """Each row's nearest other row by cosine similarity (lowest index on a tie)."""
    x = embeddings.reshape(len(embeddings), -1).astype(np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = x / np.where(norms == 0, 1.0, norms)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return similarity.argmax(axis=1)


def nearest_neighbour_agreement(reference: np.ndarray, candidate: np.ndarray) -> float | None:
    """Share of samples whose nearest other sample by cosine is the same among the reference and among the
    candidate embeddings; None below 2 samples. The cost is quadratic, so past NN_SUBSET samples it is computed
    on a subset of NN_SUBSET drawn with seed 0 (the same subset for the same sample count)."""
    n = len(reference)
    if n < 2:
        return None
    if n > NN_SUBSET:
        subset = np.sort(np.random.default_rng(0).choice(n, NN_SUBSET, replace=False))
        reference, candidate = reference[subset], candidate[subset]
    return float(np.mean(_nearest(reference) == _nearest(candidate)))


@register("embedding")
def _embedding(reference: Outputs, candidate: Outputs, output: str, spec: TaskSpec, labels) -> TaskMetrics:
    """Per-sample cosine (metrics.per_sample_cosine, near-blank rule included) and nearest-neighbour agreement:
    whether int8 keeps which samples look alike, which is what retrieval uses."""
    ref, cand = reference[output], candidate[output]
    cosine = per_sample_cosine(ref, cand)
    metrics = {"cosine": cosine.mean(), "nearest_neighbour_agreement": nearest_neighbour_agreement(ref, cand)}
    return _result("embedding", metrics, cosine, "cosine", True)


# --------------------------------------------------------------------------------------------------- entry


def evaluate_task(
    reference: Outputs, candidate: Outputs, output: str, spec: TaskSpec, labels: np.ndarray | None = None
) -> TaskMetrics:
    """The task metrics of `output` for `spec.kind` (ValueError for an unknown kind or mismatched arrays)."""
    if spec.kind not in TASKS:
        raise ValueError(f"unknown task kind {spec.kind!r}; valid kinds: {', '.join(TASKS)}")
    if output not in reference or output not in candidate:
        raise ValueError(f"output {output!r} is not among the compared outputs ({', '.join(reference)})")
    if reference[output].shape != candidate[output].shape:
        raise ValueError(
            f"output {output!r}: reference shape {reference[output].shape} != candidate {candidate[output].shape}"
        )
    if labels is not None and len(labels) != len(reference[output]):
        raise ValueError(f"{len(labels)} labels for {len(reference[output])} samples of output {output!r}")
    return TASKS[spec.kind](reference, candidate, output, spec, labels)


def per_sample_summary(result: TaskMetrics, sample_names: list[str] | None = None, worst: int = 5) -> dict:
    """JSON-ready percentiles of the per-sample score and the `worst` samples (lowest when higher is better, else
    highest; ties by index; a NaN counts as the worst and reads None)."""
    values = np.asarray(result.per_sample, dtype=np.float64)
    if sample_names is not None and len(sample_names) != len(values):
        raise ValueError(f"{len(sample_names)} sample names for {len(values)} samples")
    # One sort for all; each percentile is a value some sample has (inverted CDF): interpolating between the 0s and
    # 1s of an agreement would report a p5 of 0.35 that no sample scored.
    found = np.percentile(values, PERCENTILES, method="inverted_cdf") if values.size else [None] * len(PERCENTILES)
    percentiles = {
        f"p{q}": None if value is None else _json(value) for q, value in zip(PERCENTILES, found, strict=True)
    }
    key = values if result.higher_is_better else -values
    order = np.argsort(np.where(np.isnan(key), -np.inf, key), kind="stable")[: max(worst, 0)]
    return {
        "metric": result.per_sample_metric,
        "higher_is_better": result.higher_is_better,
        "percentiles": percentiles,
        "worst": [
            {
                "index": int(i),
                "sample": None if sample_names is None else sample_names[i],
                "value": _json(values[i]),
            }
            for i in order
        ],
    }
