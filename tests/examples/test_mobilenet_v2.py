"""The MobileNetV2-sized example end to end: a realistic graph through torch -> ONNX -> onnx2tf -> int8.

One build per session (about a minute: onnx2tf on a 3.5M-parameter graph), with few samples and timed runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from calibration import photos
from recipes.models import mobilenet_v2
from tests.conftest import REPO, build_recipe

RECIPE = REPO / "recipes" / "mobilenet_v2.yaml"


@pytest.fixture(scope="session")
def mobilenet_build(photo_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("mobilenet")
    recipe = yaml.safe_load(RECIPE.read_text())
    recipe["source"]["entry_point"] = "recipes.models.mobilenet_v2:build_model"
    recipe["source"]["weights"] = str(mobilenet_v2.make_weights(folder / "weights.pt", photo_dir))
    recipe["calibration"]["data"]["path"] = str(photo_dir / "calibration")
    recipe["calibration"]["num_samples"] = 24
    recipe["verify"]["data"]["path"] = str(photo_dir / "eval")
    recipe["verify"]["num_samples"] = 8
    recipe["verify"]["latency"] = {"warmup": 2, "runs": 5}
    return build_recipe(recipe, folder)


def test_photo_parts_come_from_different_pictures(photo_dir: Path) -> None:
    def sources(part: str) -> set[str]:
        return {p.stem.rsplit("_", 1)[0] for p in (photo_dir / part).glob("*.png")}

    assert sources("calibration").isdisjoint(sources("eval"))
    assert sources("heldout").isdisjoint(sources("calibration") | sources("eval"))
    assert len(list((photo_dir / "eval").glob("*.png"))) == 4 * photos.PARTS["eval"][1]
    assert len(list((photo_dir / "heldout").glob("*.png"))) == 4 * photos.PARTS["heldout"][1]


@pytest.mark.slow
def test_every_conversion_step_is_near_lossless(mobilenet_build) -> None:
    by_pair = {(c["reference"], c["candidate"]): c["metrics"] for c in mobilenet_build.report["comparisons"]}
    for step in (("source", "onnx"), ("onnx", "tflite-float"), ("source", "tflite-float")):
        assert by_pair[step]["cosine"] >= 0.9999, step
    assert by_pair[("source", "tflite-int8")]["accuracy_drop_pp"] is None  # no labels: untrained weights
    assert 0.9 < by_pair[("source", "tflite-int8")]["cosine"] < 0.9999  # quantization is where drift is


@pytest.mark.slow
def test_the_int8_graph_has_the_realistic_ops_all_in_int8(mobilenet_build) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=mobilenet_build.report["artifacts"]["int8_tflite"]["path"])
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED"} <= ops
    assert mobilenet_build.report["layout"]["inputs"]["image"] == [0, 2, 3, 1]


@pytest.mark.slow
def test_the_error_budget_of_a_real_architecture_on_photos(mobilenet_build) -> None:
    """Over a hundred weighted ops and their activations edited in the float model; the photos' real input values
    make the input term real too (the digits are exact on the int8 grid); the three terms explain the int8 result."""
    budget = mobilenet_build.report["quantization_budget"]
    assert budget["activations_unmatched"] == 0 and budget["weights_replaced"] > 100
    (entry,) = budget["outputs"].values()
    assert all(5 < entry[f"{term}_db"] < 60 for term in ("input", "weights", "activations")), entry
    assert abs(entry["combined_db"] - entry["int8_db"]) <= 3.0, entry


@pytest.mark.slow
def test_latency_is_reported_for_float_and_int8(mobilenet_build) -> None:
    latency = mobilenet_build.report["latency"]
    assert set(latency) == {"source", "onnx", "tflite-float", "tflite-int8"}
    assert latency["tflite-int8"]["p50_ms"] > 0.5  # a real network, not a toy: milliseconds on this CPU


@pytest.mark.slow
def test_its_html_report_renders_in_headless_chromium(mobilenet_build, tmp_path: Path) -> None:
    from tests.report.test_html import CHROMIUM, CHROMIUM_ARGS, render

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (Debian: apt-get install -y chromium): the page is not rendered")
    from playwright.sync_api import sync_playwright

    page = mobilenet_build.build_dir / "report.html"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            errors, requests, boxes, _ = render(browser, page, tmp_path / "mobilenet.png")
        finally:
            browser.close()
    assert errors == [] and requests == [page.as_uri()]
    assert [kind for kind, _ in boxes] == ["drift", "layers", "latency"]  # no labels: no confusion view
    assert all(box and box["width"] > 0 and box["height"] > 0 for _, box in boxes)
