"""The zoo's SSD pieces: the anchors, and the host post-processing op appended to an int8 model (on a tiny graph
written op by op, so no TensorFlow and no 300x300 build)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from flatbuffers import flexbuffers

from benchmarks import edgetpu_truth
from benchmarks.edgetpu_zoo import (
    SSD_ANCHORS_PER_CELL,
    SSD_CLASS_SLOTS,
    SSD_MAP_CELLS,
    ZOO,
    build,
    ssd_anchors,
    with_ssd_postprocess,
)
from benchmarks.measure import Refused
from compiler_kit.edgetpu.analysis import analyze
from compiler_kit.edgetpu.latency import activation_elements, latency_section
from tests.edgetpu.tiny_tflite import TinyGraph

ANCHORS = sum(cells * cells * per_cell for cells, per_cell in zip(SSD_MAP_CELLS, SSD_ANCHORS_PER_CELL, strict=True))


def test_the_anchors_are_the_1917_boxes_of_coral_ssd_files() -> None:
    anchors = ssd_anchors()
    assert ANCHORS == 1917 and anchors.shape == (1917, 4) and anchors.dtype == np.float32
    assert ((anchors[:, :2] > 0) & (anchors[:, :2] < 1)).all() and (anchors[:, 2:] > 0).all()
    assert np.allclose(anchors[0], [0.5 / 19, 0.5 / 19, 0.1, 0.1])  # the lowest map's first cell, its small square


def ssd_heads(tmp_path: Path, dtype: str = "int8") -> bytes:
    """A model whose outputs are an SSD's box encodings and class scores, in the order a converter may give."""
    graph = TinyGraph()
    for name, columns in (("scores", SSD_CLASS_SLOTS), ("encodings", 4)):
        source = graph.tensor(f"{name}_in", dtype, [1, ANCHORS, columns], model_input=True)
        graph.op("ADD", [source, source], [graph.tensor(name, dtype, [1, ANCHORS, columns], model_output=True)])
    return graph.write(tmp_path / "heads.tflite").read_bytes()


def test_the_post_processing_op_reads_both_heads_and_the_anchors_and_is_left_to_the_host(tmp_path: Path) -> None:
    path = tmp_path / "ssd.tflite"
    path.write_bytes(with_ssd_postprocess(ssd_heads(tmp_path)))
    prediction = analyze(path)
    last = prediction.per_op[-1]
    assert [op.operator for op in prediction.per_op if not op.mapped] == ["TFLite_Detection_PostProcess"]
    assert [t and t.name for t in last.inputs] == ["encodings", "scores", "anchors"]  # by shape, not output order
    assert [list(t.shape) for t in last.outputs] == [[1, 10, 4], [1, 10], [1, 10], [1]]
    # the host reads every anchor's encodings and class scores (the anchors are a constant) and writes 10 detections
    assert activation_elements(last) == ANCHORS * (4 + SSD_CLASS_SLOTS) + 10 * 4 + 10 + 10 + 1

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    graph = model.subgraphs[0]
    assert list(graph.outputs) == list(graph.operators[-1].outputs)
    options = flexbuffers.Loads(bytes(graph.operators[-1].customOptions))
    assert options["num_classes"] == 90 and options["max_detections"] == 10 and options["use_regular_nms"] is False
    anchors = graph.tensors[graph.operators[-1].inputs[2]]
    assert np.frombuffer(bytes(model.buffers[anchors.buffer].data), np.float32).reshape(-1, 4).shape == (1917, 4)


def test_the_post_processing_op_is_timed_here_on_uint8_scores_and_listed_unmeasured_on_int8(tmp_path: Path) -> None:
    """LiteRT's kernel reads float32 or uint8 (Coral's SSD files), not int8: only what it can run is timed here."""
    sections = {}
    for dtype in ("uint8", "int8"):
        path = tmp_path / f"ssd_{dtype}.tflite"
        path.write_bytes(with_ssd_postprocess(ssd_heads(tmp_path, dtype)))
        sections[dtype] = latency_section(analyze(path))
    assert sections["uint8"]["cpu_part_here"]["ms"] > 0 and sections["uint8"]["cpu_unmeasured_ops"] == []
    assert sections["int8"]["cpu_unmeasured_ops"] == ["#2 TFLite_Detection_PostProcess"]
    assert sections["int8"]["cpu_part_here"]["ms"] is None  # nothing was timed: not "0 ms"
    assert "has a kernel here" in sections["int8"]["cpu_part_here"]["error"]
    assert sections["int8"]["targets"] == sections["uint8"]["targets"]  # the prediction never depends on it


def test_a_coral_file_not_in_the_cache_is_refused_with_the_command_that_fills_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edgetpu_truth, "CACHE", tmp_path)  # an empty cache
    with pytest.raises(Refused, match=r"MobileNet v1 0\.25: Coral's file .* is not cached: .*populate"):
        build(ZOO["MobileNet v1 0.25"])
