"""Edge TPU legalization end to end: a small torch CNN with every construct the rewrites handle builds fully onto the
(predicted) Edge TPU without conversion drift; without legalization the same model maps nothing and says so; an
ONNX file as projects ship it (names with '@', a batch of -1, output shapes left open) builds as it is; an onnx2tf
failure names the node and keeps the converter's log in the build folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from compiler_kit.edgetpu.analysis import analyze
from compiler_kit.legalize.rewrites import REWRITES
from tests.cli.test_build import ckit
from tests.conftest import random_splits
from tests.legalize import constructs

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return random_splits(
        tmp_path_factory.mktemp("constructs-data"), constructs.SHAPE, {"calibration": 24, "eval": 8}, seed=0
    )


def _recipe(source: dict[str, Any], data: dict[str, Path], folder: Path, **sections: Any) -> Path:
    recipe = {
        "name": "constructs",
        "source": source,
        "inputs": [{"name": "x", "shape": list(constructs.SHAPE), "layout": "NCHW"}],
        "calibration": {"data": {"path": str(data["calibration"])}},
        "verify": {"data": {"path": str(data["eval"])}, "latency": {"warmup": 1, "runs": 3}},
        "output": {"dir": str(folder / "build")},
        **sections,
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


TORCH_SOURCE = {"framework": "torch", "entry_point": "tests.legalize.constructs:build_model"}


def _report(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "build" / "report.json").read_text())


def _conversion_cosines(report: dict[str, Any]) -> list[float]:
    steps = ("onnx", "tflite-float")
    return [c["metrics"]["cosine"] for c in report["comparisons"] if c["candidate"] in steps]


@pytest.fixture(scope="module")
def legalized(data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("legalized")
    result = ckit("build", str(_recipe(TORCH_SOURCE, data, folder)))
    assert result.exit_code == 0, result.output
    return folder


def test_every_construct_is_rewritten_once_checked_and_listed(legalized: Path) -> None:
    rows = {row["name"]: row for row in _report(legalized)["legalization"]["rewrites"]}
    legalizing = {name for name, rewrite in REWRITES.items() if not rewrite.opt_in}
    assert set(rows) == legalizing, rows  # each rewrite found its construct; the opt-in remedy was not asked for
    assert all(row["status"] == "applied" and row["max_relative_error"] < 1e-4 for row in rows.values()), rows
    assert rows["maxpool_padding"]["count"] == 2 and rows["grouped_conv"]["count"] == 1


def test_the_legalized_model_converts_without_drift_and_maps_fully(legalized: Path) -> None:
    report = _report(legalized)
    assert min(_conversion_cosines(report)) >= 0.9999, report["comparisons"]
    edgetpu = report["edgetpu"]
    assert edgetpu["predicted"] and edgetpu["ops_on_cpu"] == 0 and edgetpu["edgetpu_subgraphs"] == 1, edgetpu
    assert edgetpu["latency"]["targets"]["usb"]["predicted_ms"] > 0
    ops = analyze(legalized / "build" / "model_int8.tflite").per_op
    assert not {"PADV2", "HARD_SWISH", "RELU_0_TO_1"} & {op.operator for op in ops}
    assert max(op.version for op in ops if op.operator == "CONV_2D") <= 5
    assert not [finding for finding in report["findings"] if "Edge TPU" in finding]


def test_a_max_pool_padded_with_minus_inf_is_refused_cleanly(data: dict[str, Path], tmp_path: Path) -> None:
    """The -3.4e38 padding of the signed max-pool gives int8 a scale XNNPACK refuses: exit 2, not a traceback, in
    the build. `ckit inspect` of its int8 model still predicts (exit 0: the prediction no longer rests on timing the
    CPU ops here) and says why those ops could not be timed, with the fix."""
    result = ckit("build", str(_recipe(TORCH_SOURCE, data, tmp_path, legalize={"skip": ["maxpool_padding"]})))
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "LiteRT cannot run the tflite-int8 model" in result.stderr and "legalize.enabled" in result.stderr
    inspected = ckit("inspect", str(tmp_path / "build" / "model_int8.tflite"))
    assert inspected.exit_code == 0 and "Traceback" not in inspected.output, inspected.output
    assert "LiteRT cannot run the ops the Edge TPU would leave to the CPU" in inspected.output
    assert "build the model with legalize on" in inspected.output


def test_without_legalization_nothing_maps_and_the_build_says_so(data: dict[str, Path], tmp_path: Path) -> None:
    """Only the rewrites that XNNPACK does not need are skipped, so the build runs to its report."""
    skip = sorted({name for name, rewrite in REWRITES.items() if not rewrite.opt_in} - {"maxpool_padding"})
    result = ckit("build", str(_recipe(TORCH_SOURCE, data, tmp_path, legalize={"skip": skip})))
    assert result.exit_code == 0, result.output  # no gate asks for the Edge TPU: a warning, not a failure
    report = _report(tmp_path)
    edgetpu = report["edgetpu"]
    assert edgetpu["ops_on_edgetpu"] == 0 and edgetpu["edgetpu_subgraphs"] == 0, edgetpu
    assert "latency" not in edgetpu  # no Edge TPU latency for a model the compiler cannot parse
    failure = edgetpu["failures"][0]
    assert failure["kind"] == "op_version" and "grouped_conv" in failure["advice"] and "2.5" not in failure["advice"]
    assert f"warning: only 0 of {edgetpu['ops_on_cpu']} ops run on the Edge TPU" in result.stderr
    assert any(finding.startswith("only 0 of") for finding in report["findings"])
    statuses = {row["name"]: row["status"] for row in report["legalization"]["rewrites"]}
    assert statuses == {**dict.fromkeys(skip, "skipped (legalize.skip)"), "maxpool_padding": "applied"}


def _as_shipped(path: Path, unknown_sizes: bool = True) -> Path:
    """The constructs model exported to ONNX, then made like real projects' files: every node name with '@', a
    batch of -1 (not symbolic), and (`unknown_sizes`) the other dimensions left unknown."""
    import onnx
    import torch

    torch.onnx.export(constructs.build_model(), (torch.zeros(constructs.SHAPE),), str(path), dynamo=True)
    model = onnx.load(str(path))
    for index, node in enumerate(model.graph.node):
        node.name = f"{node.op_type}@{index}"
    for value in (model.graph.input[0], model.graph.output[0]):
        for dim in value.type.tensor_type.shape.dim[: None if unknown_sizes else 1]:
            dim.Clear()  # unknown: neither a size nor a name, as some exporters write it
        value.type.tensor_type.shape.dim[0].dim_value = -1
    onnx.save(model, str(path))
    return path


def test_an_onnx_file_as_shipped_builds(data: dict[str, Path], tmp_path: Path) -> None:
    onnx_path = _as_shipped(tmp_path / "shipped.onnx")
    result = ckit("build", str(_recipe({"framework": "onnx", "path": str(onnx_path)}, data, tmp_path)))
    assert result.exit_code == 0, result.output
    report = _report(tmp_path)
    assert min(_conversion_cosines(report)) >= 0.9999
    renamed = report["legalization"]["renamed"]
    assert sum("@" in original for original in renamed.values()) >= 10  # every node of ours, and more
    assert not [new for new in renamed if "@" in new or new.startswith("_")]
    assert report["edgetpu"]["ops_on_cpu"] == 0


def test_a_recipe_from_ckit_init_builds_once_the_data_paths_are_filled_in(
    data: dict[str, Path], tmp_path: Path
) -> None:
    onnx_path = _as_shipped(tmp_path / "shipped.onnx", unknown_sizes=False)
    recipe_path = tmp_path / "recipe.yaml"
    assert ckit("init", str(onnx_path), "--out", str(recipe_path)).exit_code == 0
    recipe = yaml.safe_load(recipe_path.read_text())
    recipe["calibration"]["data"]["path"] = str(data["calibration"])
    recipe["verify"]["data"] = {"path": str(data["eval"])}  # no labels in these samples
    recipe_path.write_text(yaml.safe_dump(recipe))
    result = ckit("build", str(recipe_path), "--out", str(tmp_path / "build"))
    assert result.exit_code == 0, result.output


def test_an_onnx2tf_failure_names_the_node_and_keeps_the_log(tmp_path: Path) -> None:
    from tests.frontends.test_onnx import _fancy_model

    model = _fancy_model(tmp_path / "fancy.onnx")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.standard_normal((4, 8)).astype(np.float32))
    recipe = {
        "name": "fancy",
        "source": {"framework": "onnx", "path": str(model)},
        "inputs": [{"name": "x", "shape": [1, 8]}],
        "calibration": {"data": {"path": str(tmp_path / "data.npz")}},
        "verify": {"data": {"path": str(tmp_path / "data.npz")}},
        "output": {"dir": str(tmp_path / "build")},
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = ckit("build", str(tmp_path / "recipe.yaml"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    log = tmp_path / "build" / "onnx2tf.log"
    assert f"{log}: onnx2tf cannot convert the model: op FancyOp (node fancy_1)" in result.stderr
    assert log.is_file() and "FancyOp" in log.read_text()
