"""Task metrics on small arrays whose results are worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from compiler_kit.compare import tasks
from compiler_kit.compare.tasks import (
    TASK_METRIC_NAMES,
    TASKS,
    TaskMetrics,
    TaskSpec,
    ctc_greedy,
    edit_distances,
    evaluate_task,
    infer_task,
    nms,
    per_sample_summary,
)


def run(kind: str, reference, candidate, labels=None, extra: dict | None = None, **spec) -> TaskMetrics:
    """evaluate_task on output "out", with `extra` = {name: (reference, candidate)} as further model outputs."""
    ref = {"out": np.asarray(reference, np.float32)}
    cand = {"out": np.asarray(candidate, np.float32)}
    for name, (r, c) in (extra or {}).items():
        ref[name], cand[name] = np.asarray(r, np.float32), np.asarray(c, np.float32)
    return evaluate_task(ref, cand, "out", TaskSpec(kind, **spec), labels)


# ---------------------------------------------------------------------------------------------- registry


def test_every_kind_is_registered_with_its_metric_names():
    assert (
        set(TASKS)
        == set(TASK_METRIC_NAMES)
        == {
            "classification",
            "map",
            "sequence",
            "detection",
            "regression",
            "embedding",
        }
    )


def test_unknown_kind_is_a_value_error_listing_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown task kind 'segmentation'.*classification.*embedding"):
        run("segmentation", [[1.0]], [[1.0]])


def test_mismatched_shapes_are_a_value_error():
    with pytest.raises(ValueError, match="reference shape"):
        run("regression", [[1.0, 2.0]], [[1.0]])


@pytest.mark.parametrize("kind", sorted(TASK_METRIC_NAMES))
def test_every_result_has_exactly_its_kinds_metric_names_and_is_json_ready(kind):
    rng = np.random.default_rng(1)
    shapes = {
        "classification": (3, 6),
        "map": (3, 2, 4, 4),
        "sequence": (3, 5, 4),
        "detection": (3, 6, 8),
        "regression": (3, 2),
        "embedding": (3, 8),
    }
    reference = rng.random(shapes[kind])
    result = run(kind, reference, reference + 0.01)
    assert result.task == kind
    assert tuple(result.metrics) == TASK_METRIC_NAMES[kind]
    assert all(value is None or type(value) is float for value in result.metrics.values())
    assert result.per_sample.shape == (3,) and result.per_sample.dtype == np.float64
    json.dumps(result.metrics, allow_nan=False)
    json.dumps(per_sample_summary(result), allow_nan=False)


# ---------------------------------------------------------------------------------------------- classification

# Reference top-1: [0, 1, 2]. Candidate top-1: [0, 5, 3]. The candidate ranks class 1 (sample 1) 2nd of 6, so it
# is in its top-5; it ranks class 2 (sample 2) last of 6, so it is not.
CLS_REFERENCE = [[9, 1, 0, 0, 0, 0], [0, 9, 1, 0, 0, 0], [0, 0, 9, 1, 0, 0]]
CLS_CANDIDATE = [[9, 1, 0, 0, 0, 0], [0, 8, 2, 3, 4, 9], [6, 5, 0, 9, 8, 7]]


def test_classification_top1_and_top5_agreement():
    result = run("classification", CLS_REFERENCE, CLS_CANDIDATE)
    assert result.metrics["top1_agreement"] == pytest.approx(1 / 3)
    assert result.metrics["top5_agreement"] == pytest.approx(2 / 3)
    assert result.per_sample.tolist() == [1.0, 0.0, 0.0]
    assert (result.per_sample_metric, result.higher_is_better) == ("top1_agreement", True)


def test_classification_accuracies_need_labels():
    without = run("classification", CLS_REFERENCE, CLS_CANDIDATE)
    assert without.metrics["accuracy_reference"] is None
    assert without.metrics["accuracy_drop_pp"] is None
    # Labels [0, 1, 3]: reference right on 0, 1 (2/3); candidate right on 0, 2 (2/3); labels [0, 1, 2]: 1 vs 1/3.
    same = run("classification", CLS_REFERENCE, CLS_CANDIDATE, labels=np.array([0, 1, 3]))
    assert same.metrics["accuracy_reference"] == same.metrics["accuracy_candidate"] == pytest.approx(2 / 3)
    assert same.metrics["accuracy_drop_pp"] == pytest.approx(0.0)
    worse = run("classification", CLS_REFERENCE, CLS_CANDIDATE, labels=np.array([0, 1, 2]))
    assert worse.metrics["accuracy_drop_pp"] == pytest.approx(100 * (1 - 1 / 3))


def test_classification_with_fewer_than_five_classes_uses_top_c():
    # With 3 classes every class is in the top-3, whatever the candidate says.
    result = run("classification", [[3, 2, 1], [1, 2, 3]], [[1, 2, 3], [3, 2, 1]])
    assert result.metrics["top1_agreement"] == 0.0
    assert result.metrics["top5_agreement"] == 1.0


def test_classification_flattens_any_shape():
    reference = np.zeros((2, 2, 3))
    reference[0, 1, 2] = 1  # flat class 5
    reference[1, 0, 0] = 1  # flat class 0
    candidate = reference.copy()
    candidate[1, 0, 1] = 2  # now flat class 1
    result = run("classification", reference, candidate)
    assert result.per_sample.tolist() == [1.0, 0.0]


# ---------------------------------------------------------------------------------------------------- map


def _column_mask(columns: list[int], size: int = 4) -> np.ndarray:
    mask = np.zeros((size, size), np.float32)
    mask[:, columns] = 0.9
    return mask


def test_map_single_channel_mask_shifted_by_one_column():
    # Sample 0: reference columns 1-2, int8 shifted to 2-3: intersection 4 pixels, union 12 -> IoU 1/3; the
    # masks differ on columns 1 and 3, 8 of 16 pixels -> agreement 0.5. Sample 1: both empty -> IoU 1.
    # Sample 2: identical -> IoU 1.
    reference = np.stack([_column_mask([1, 2]), _column_mask([]), _column_mask([0])])[:, None]  # (3, 1, 4, 4)
    candidate = np.stack([_column_mask([2, 3]), _column_mask([]), _column_mask([0])])[:, None]
    result = run("map", reference, candidate, channel_axis=0)
    assert result.per_sample == pytest.approx([1 / 3, 1.0, 1.0])
    assert result.metrics["iou"] == pytest.approx((1 / 3 + 2) / 3)
    assert result.metrics["iou_min"] == pytest.approx(1 / 3)
    assert result.metrics["samples_iou_below_0_5"] == 1.0
    assert result.metrics["pixel_agreement"] == pytest.approx((0.5 + 2) / 3)
    assert (result.per_sample_metric, result.higher_is_better) == ("iou", True)


def test_map_without_channel_axis_thresholds_at_spec_threshold():
    reference = [[[0.6, 0.6], [0.0, 0.0]]]  # (1, 2, 2): an (H, W) map
    candidate = [[[0.6, 0.4], [0.0, 0.0]]]
    assert run("map", reference, candidate).per_sample == pytest.approx([0.5])  # 1 of 2 foreground pixels
    assert run("map", reference, candidate, threshold=0.3).per_sample == pytest.approx([1.0])


def test_map_multi_class_mean_iou_over_present_classes():
    # Sample 0: reference classes [[0, 1], [2, 2]], candidate [[0, 1], [1, 2]]: pixel agreement 3/4; IoU class 0
    # 1/1, class 1 1/2, class 2 1/2 -> 2/3. Sample 1: classes 0 and 1 only, identical: class 2 is absent from both
    # and skipped, so IoU is 1, not 2/3.
    eye = np.eye(3, dtype=np.float32)
    ref_classes = np.array([[[0, 1], [2, 2]], [[0, 0], [0, 1]]])
    cand_classes = np.array([[[0, 1], [1, 2]], [[0, 0], [0, 1]]])
    reference, candidate = eye[ref_classes], eye[cand_classes]  # (2, H, W, C)
    result = run("map", reference, candidate)
    assert result.per_sample == pytest.approx([2 / 3, 1.0])
    assert result.metrics["pixel_agreement"] == pytest.approx((0.75 + 1) / 2)
    assert result.metrics["samples_iou_below_0_5"] == 0.0
    # The same maps channels-first give the same numbers.
    chw = run("map", reference.transpose(0, 3, 1, 2), candidate.transpose(0, 3, 1, 2), channel_axis=0)
    assert chw.per_sample == pytest.approx(result.per_sample)


# ------------------------------------------------------------------------------------------------ sequence


def one_hot(steps: list[list[int]], classes: int = 3) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[np.array(steps)]  # (samples, T, C)


def test_ctc_greedy_collapses_repeats_then_drops_blanks():
    steps = np.array([[1, 1, 0, 2], [1, 0, 2, 2], [1, 0, 1, 1], [0, 0, 0, 0]])
    tokens, lengths = ctc_greedy(steps, 0)
    assert lengths.tolist() == [2, 2, 2, 0]
    assert tokens.tolist() == [[1, 2, -1, -1], [1, 2, -1, -1], [1, 1, -1, -1], [-1, -1, -1, -1]]


def test_edit_distances_known_values_row_by_row():
    pairs = [
        ([10, 8, 19, 19, 4, 13], [18, 8, 19, 19, 8, 13, 6]),  # "kitten" -> "sitting": 3
        ([], [1, 2]),  # 2 insertions
        ([1, 2, 3], []),  # 3 deletions
        ([1, 2, 3], [1, 2, 3]),
        ([1, 2, 3], [3, 2, 1]),  # 2 substitutions
        ([1, 2, 3, 4], [2, 3, 4, 5]),  # delete 1, insert 5
    ]
    a, b = np.full((len(pairs), 7), -1), np.full((len(pairs), 7), -1)
    for row, (x, y) in enumerate(pairs):
        a[row, : len(x)], b[row, : len(y)] = x, y
    lengths_a, lengths_b = np.array([len(x) for x, _ in pairs]), np.array([len(y) for _, y in pairs])
    assert edit_distances(a, lengths_a, b, lengths_b).tolist() == [3, 2, 3, 0, 2, 2]


def test_sequence_ctc_same_text_from_different_steps():
    # "1 1 blank 2" and "1 blank 2 2" both decode to [1, 2]: exact match though only 2 of 4 steps agree.
    result = run("sequence", one_hot([[1, 1, 0, 2]]), one_hot([[1, 0, 2, 2]]), ctc_blank=0)
    assert result.metrics["step_agreement"] == 0.5
    assert result.metrics["exact_match"] == 1.0
    assert result.metrics["edit_distance"] == 0.0
    assert (result.per_sample_metric, result.per_sample.tolist()) == ("sequence_similarity", [1.0])


def test_sequence_ctc_edit_distance():
    # Sample 0: [1, 2, 1, 2] vs [1, 2]: distance 2, normalized 2/4. Sample 1: [1, 1] vs [1]: distance 1, 1/2.
    # Sample 2: [] vs [2, 1]: distance 2, normalized by max(0, 1) = 2 -> similarity clipped at 0.
    reference = one_hot([[1, 2, 1, 2, 0], [1, 0, 1, 0, 0], [0, 0, 0, 0, 0]])
    candidate = one_hot([[1, 1, 2, 2, 0], [1, 1, 1, 0, 0], [2, 0, 1, 0, 0]])
    result = run("sequence", reference, candidate, ctc_blank=0)
    assert result.metrics["exact_match"] == 0.0
    assert result.metrics["edit_distance"] == pytest.approx((2 + 1 + 2) / 3)
    assert result.metrics["normalized_edit_distance"] == pytest.approx((0.5 + 0.5 + 2) / 3)
    assert result.per_sample == pytest.approx([0.5, 0.5, 0.0])
    # Steps agree: 4/5 (1 2 1 2 0 vs 1 1 2 2 0: 3/5), (1 0 1 0 0 vs 1 1 1 0 0: 4/5), (0 0 0 0 0 vs 2 0 1 0 0: 3/5).
    assert result.metrics["step_agreement"] == pytest.approx((3 + 4 + 3) / 15)


def test_sequence_blank_may_count_from_the_end_and_classes_may_come_first():
    # Blank = last class (2): [0, 0, 2, 1] -> [0, 1]; [0, 1, 1, 2] -> [0, 1].
    reference, candidate = one_hot([[0, 0, 2, 1]]), one_hot([[0, 1, 1, 2]])
    last = run("sequence", reference, candidate, ctc_blank=-1)
    first = run("sequence", reference.transpose(0, 2, 1), candidate.transpose(0, 2, 1), ctc_blank=2, channel_axis=0)
    assert last.metrics == first.metrics
    assert last.metrics["exact_match"] == 1.0
    with pytest.raises(ValueError, match="ctc_blank 3"):
        run("sequence", reference, candidate, ctc_blank=3)


def test_sequence_without_ctc_scores_steps_only():
    result = run("sequence", one_hot([[1, 1, 0, 2], [1, 2, 2, 2]]), one_hot([[1, 0, 2, 2], [1, 2, 2, 2]]))
    assert result.metrics["step_agreement"] == pytest.approx(0.75)
    assert result.metrics["exact_match"] is None
    assert result.metrics["normalized_edit_distance"] is None
    assert (result.per_sample_metric, result.per_sample.tolist()) == ("step_agreement", [0.5, 1.0])


# ------------------------------------------------------------------------------------------------ detection


def anchor_free(anchors: list[tuple[float, float, float, float, int, float]], n: int = 8, classes: int = 2):
    """One sample (4+C, N): each anchor (cx, cy, w, h, class, score); unused anchors score 0.1."""
    x = np.zeros((4 + classes, n), np.float32)
    x[4:] = 0.1
    for k, (cx, cy, w, h, cls, score) in enumerate(anchors):
        x[:4, k] = cx, cy, w, h
        x[4 + cls, k] = score
    return x


BOX_A = (10, 10, 4, 4)  # x1 y1 x2 y2 = 8 8 12 12
BOX_A_SHIFTED = (11, 10, 4, 4)  # 9 8 13 12: overlap 3 x 4 = 12, union 16 + 16 - 12 = 20 -> IoU 0.6
BOX_B = (50, 50, 10, 10)


def test_detection_one_box_dropped_halves_recall():
    reference = [anchor_free([(*BOX_A, 0, 0.9), (*BOX_B, 1, 0.8)])]
    candidate = [anchor_free([(*BOX_A_SHIFTED, 0, 0.85), (*BOX_B, 1, 0.2)])]  # B falls below score 0.3
    result = run("detection", reference, candidate)
    assert result.metrics["recall"] == 0.5
    assert result.metrics["precision"] == 1.0
    assert result.metrics["f1"] == pytest.approx(2 / 3)
    assert result.metrics["mean_matched_iou"] == pytest.approx(0.6)
    assert (result.metrics["detections_reference"], result.metrics["detections_candidate"]) == (2.0, 1.0)
    assert result.per_sample == pytest.approx([2 / 3])
    # (N, 4+C) is read the same way: the 4+C axis is the smaller one.
    transposed = run("detection", np.transpose(reference, (0, 2, 1)), np.transpose(candidate, (0, 2, 1)))
    assert transposed.metrics == result.metrics


def test_detection_needs_the_same_class_and_enough_iou():
    reference = [anchor_free([(*BOX_A, 0, 0.9)])] * 3
    candidate = [
        anchor_free([(*BOX_A, 1, 0.9)]),  # right place, wrong class
        anchor_free([(*BOX_A_SHIFTED, 0, 0.9)]),  # IoU 0.6
        anchor_free([(*BOX_A_SHIFTED, 0, 0.9)]),
    ]
    assert run("detection", reference, candidate).per_sample == pytest.approx([0.0, 1.0, 1.0])
    assert run("detection", reference, candidate, iou_threshold=0.7).per_sample == pytest.approx([0.0, 0.0, 0.0])


def test_detection_per_sample_f1_with_empty_sides():
    # Sample 0: nothing on either side -> 1.0. Sample 1: only the reference has a box -> 0.0.
    # Sample 2: only the candidate has one -> 0.0. Pooled: 0 matched of 1 reference and 1 candidate detection.
    reference = [anchor_free([]), anchor_free([(*BOX_A, 0, 0.9)]), anchor_free([])]
    candidate = [anchor_free([]), anchor_free([]), anchor_free([(*BOX_A, 0, 0.9)])]
    result = run("detection", reference, candidate)
    assert result.per_sample.tolist() == [1.0, 0.0, 0.0]
    assert (result.metrics["recall"], result.metrics["precision"], result.metrics["f1"]) == (0.0, 0.0, 0.0)
    assert result.metrics["mean_matched_iou"] is None
    nothing = run("detection", [anchor_free([])], [anchor_free([])])
    assert (nothing.metrics["recall"], nothing.metrics["precision"], nothing.metrics["f1"]) == (1.0, 1.0, 1.0)


def test_nms_suppresses_overlaps_of_the_same_class_only():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float64)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    classes = np.array([0, 0, 1, 0])
    # Box 1 overlaps box 0 with IoU 90/110 > 0.5 in class 0: suppressed; box 2 is the same place in class 1: kept.
    assert nms(boxes, scores, classes, 0.5).tolist() == [0, 2, 3]
    assert nms(boxes, scores, classes, 0.9).tolist() == [0, 1, 2, 3]


def test_detection_anchor_free_applies_nms_before_matching():
    # The reference fires twice on A (the second suppressed) -> 1 reference detection, matched.
    reference = [anchor_free([(*BOX_A, 0, 0.9), (*BOX_A_SHIFTED, 0, 0.8)])]
    candidate = [anchor_free([(*BOX_A, 0, 0.9)])]
    result = run("detection", reference, candidate)
    assert result.metrics["detections_reference"] == 1.0
    assert result.metrics["recall"] == result.metrics["precision"] == 1.0


def test_detection_boxes_scores_decoder():
    # Per sample: boxes (3, 4), scores (3, 2). Reference keeps boxes 0 (class 0) and 1 (class 1); the candidate
    # scores box 1 for class 0 instead: one match of two.
    boxes = [[[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]]]
    ref_scores = [[[0.9, 0.0], [0.1, 0.8], [0.1, 0.1]]]
    cand_scores = [[[0.9, 0.0], [0.7, 0.2], [0.1, 0.1]]]
    extra = {"scores": (ref_scores, cand_scores)}
    result = run("detection", boxes, boxes, extra=extra, decoder="boxes_scores", scores_output="scores")
    assert (result.metrics["recall"], result.metrics["precision"]) == (0.5, 0.5)
    assert result.metrics["mean_matched_iou"] == 1.0


def test_detection_boxes_scores_names_what_is_missing():
    boxes = [[[0, 0, 10, 10]]]
    with pytest.raises(ValueError, match="scores_output"):
        run("detection", boxes, boxes, decoder="boxes_scores")
    with pytest.raises(ValueError, match="'logits' is not an output"):
        run("detection", boxes, boxes, decoder="boxes_scores", scores_output="logits")


DECODER_MODULE = '''
import numpy as np

def decode(outputs):
    """Rows of "out": x1, y1, x2, y2, score, class; the other output proves every output is passed."""
    assert set(outputs) == {"out", "unused"} and outputs["out"].ndim == 2
    rows = outputs["out"]
    return rows[:, :4], rows[:, 4], rows[:, 5].astype(int)
'''


def test_detection_entry_point_decoder(tmp_path, monkeypatch):
    (tmp_path / "ckit_test_decoder_ok.py").write_text(DECODER_MODULE)
    monkeypatch.syspath_prepend(tmp_path)
    # Sample 0: the candidate finds both boxes; sample 1: it misses the second and adds a low-score box that the
    # score threshold drops.
    reference = [[[0, 0, 10, 10, 0.9, 0], [20, 20, 30, 30, 0.9, 1]]] * 2
    candidate = [[[0, 0, 10, 10, 0.9, 0], [20, 20, 30, 30, 0.9, 1]], [[0, 0, 10, 10, 0.9, 0], [60, 60, 70, 70, 0.1, 1]]]
    unused = np.zeros((2, 3))
    result = run(
        "detection", reference, candidate, extra={"unused": (unused, unused)}, decoder="ckit_test_decoder_ok:decode"
    )
    assert result.metrics["recall"] == 0.75
    assert result.metrics["precision"] == 1.0
    assert result.per_sample == pytest.approx([1.0, 2 / 3])


def test_detection_entry_point_failures_are_value_errors_naming_it(tmp_path, monkeypatch):
    (tmp_path / "ckit_test_decoder_broken.py").write_text("import not_a_module_anywhere_ckit\n")
    (tmp_path / "ckit_test_decoder_raises.py").write_text("def decode(outputs):\n    raise KeyError('boxes')\n")
    monkeypatch.syspath_prepend(tmp_path)
    sample = [[[0, 0, 10, 10, 0.9, 0]]]
    cases = {
        "ckit_test_no_such_module:decode": "No module named 'ckit_test_no_such_module'",
        "ckit_test_decoder_broken:decode": "not_a_module_anywhere_ckit",
        "ckit_test_decoder_raises:missing": "has no 'missing'",
        "ckit_test_decoder_raises:decode": "failed on sample 0: KeyError",
        "no_colon_here": "neither a built-in",
    }
    for entry_point, reason in cases.items():
        with pytest.raises(ValueError, match=rf"{entry_point!r}.*{reason}|{reason}.*{entry_point!r}") as caught:
            run("detection", sample, sample, decoder=entry_point)
        assert entry_point in str(caught.value)


# ----------------------------------------------------------------------------------------------- regression


def test_regression_errors_in_units():
    # Depths in metres: errors (candidate - reference) 0.5, 0, 0, -3.
    result = run("regression", [[1.0, 2.0], [3.0, 4.0]], [[1.5, 2.0], [3.0, 1.0]], units="m")
    assert result.metrics["mae"] == pytest.approx(3.5 / 4)
    assert result.metrics["rmse"] == pytest.approx(math.sqrt(9.25 / 4))
    assert result.metrics["max_abs_error"] == pytest.approx(3.0)
    assert result.metrics["bias"] == pytest.approx(-2.5 / 4)
    assert result.per_sample == pytest.approx([0.25, 1.5])
    assert (result.per_sample_metric, result.higher_is_better) == ("abs_error_mean", False)


# ------------------------------------------------------------------------------------------------ embedding


def circle(degrees: list[float]) -> np.ndarray:
    radians = np.radians(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1)


def test_embedding_nearest_neighbour_agreement_sees_structure_not_position():
    # Reference at 0, 10, 90, 100 degrees: nearest neighbours 1, 0, 3, 2.
    reference = circle([0, 10, 90, 100])
    # Swapping within pairs keeps every neighbour (agreement 1) though each vector moved by 10 degrees.
    swapped = run("embedding", reference, reference[[1, 0, 3, 2]])
    assert swapped.metrics["nearest_neighbour_agreement"] == 1.0
    assert swapped.metrics["cosine"] == pytest.approx(math.cos(math.radians(10)))
    assert swapped.per_sample == pytest.approx([math.cos(math.radians(10))] * 4)
    # Candidate at 90, 10, 0, 100: neighbours 3, 2, 1, 0 -- none agrees.
    mixed = run("embedding", reference, reference[[2, 1, 0, 3]])
    assert mixed.metrics["nearest_neighbour_agreement"] == 0.0


def test_embedding_nearest_neighbour_agreement_needs_two_samples():
    assert run("embedding", [[1.0, 0.0]], [[1.0, 0.0]]).metrics["nearest_neighbour_agreement"] is None


def test_embedding_nearest_neighbour_agreement_uses_a_seeded_subset_past_the_limit(monkeypatch):
    monkeypatch.setattr(tasks, "NN_SUBSET", 3)
    # Candidate = reference with sample 4 moved next to sample 0; which samples the subset holds decides the result.
    reference = circle([0, 40, 90, 150, 260])
    candidate = circle([0, 40, 90, 150, 5])
    subset = np.sort(np.random.default_rng(0).choice(5, 3, replace=False))
    expected = tasks.nearest_neighbour_agreement(reference[subset], candidate[subset])
    assert tasks.nearest_neighbour_agreement(reference, candidate) == expected
    full = run("embedding", reference, candidate).metrics["nearest_neighbour_agreement"]
    assert full == expected


# ------------------------------------------------------------------------------------------------ infer_task


@pytest.mark.parametrize(
    ("shape", "channel_axis", "kind"),
    [
        ((), -1, "regression"),
        ((1,), -1, "regression"),
        ((1, 1, 1), 0, "regression"),
        ((1000,), -1, "classification"),
        ((1, 1000), -1, "classification"),
        ((1000, 1), -1, "classification"),
        ((1, 1, 1000), -1, "classification"),  # a conv head: no spatial extent
        ((25, 37), -1, "sequence"),
        ((21, 64, 64), 0, "map"),
        ((64, 64, 21), -1, "map"),
        ((1, 64, 64), 0, "map"),
        ((64, 64, 1), -1, "map"),
    ],
)
def test_infer_task(shape, channel_axis, kind):
    assert infer_task(shape, channel_axis) == kind


# --------------------------------------------------------------------------------------------- summary


def _result(values: list[float], higher_is_better: bool = True) -> TaskMetrics:
    return TaskMetrics("map", {}, np.array(values, np.float64), "iou", higher_is_better)


def test_per_sample_summary_lists_the_worst_first_ties_by_index():
    result = _result([0.9, 0.2, 0.5, 0.2, 1.0])
    summary = per_sample_summary(result, ["a", "b", "c", "d", "e"], worst=3)
    assert summary["metric"] == "iou" and summary["higher_is_better"] is True
    assert summary["worst"] == [
        {"index": 1, "sample": "b", "value": 0.2},
        {"index": 3, "sample": "d", "value": 0.2},
        {"index": 2, "sample": "c", "value": 0.5},
    ]
    assert summary["percentiles"]["p0"] == 0.2
    assert summary["percentiles"]["p50"] == 0.5
    assert summary["percentiles"]["p100"] == 1.0
    assert summary["percentiles"]["p95"] == 1.0  # a value a sample has, not one between 0.9 and 1.0
    agreement = per_sample_summary(_result([1.0] * 19 + [0.0]))["percentiles"]
    assert agreement["p1"] == 0.0 and agreement["p5"] == 0.0 and agreement["p50"] == 1.0  # not an interpolated 0.35
    assert list(summary["percentiles"]) == ["p0", "p1", "p5", "p50", "p95", "p100"]


def test_per_sample_summary_worst_is_highest_when_lower_is_better():
    summary = per_sample_summary(_result([0.1, 3.0, 0.5, 3.0], higher_is_better=False), worst=2)
    assert [(w["index"], w["sample"], w["value"]) for w in summary["worst"]] == [(1, None, 3.0), (3, None, 3.0)]


def test_per_sample_summary_nan_is_worst_and_json_ready():
    summary = per_sample_summary(_result([0.5, float("nan"), 0.1]), worst=5)
    assert [w["index"] for w in summary["worst"]] == [1, 2, 0]
    assert summary["worst"][0]["value"] is None
    json.dumps(summary, allow_nan=False)
    assert all(type(w["value"]) in (float, type(None)) and type(w["index"]) is int for w in summary["worst"])


def test_per_sample_summary_rejects_a_wrong_number_of_names():
    with pytest.raises(ValueError, match="2 sample names for 3 samples"):
        per_sample_summary(_result([0.1, 0.2, 0.3]), ["a", "b"])
