"""`ckit tune`: search spaces as data, the choice rule, and a real tune of the digits CNN whose calibration data
has hot pixels (where percentile ranges beat min-max)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from compiler_kit.cli import app
from compiler_kit.errors import BadInputError
from compiler_kit.tune import (
    AS_WRITTEN,
    RANGES,
    REFINEMENTS,
    Space,
    Trial,
    TrialResult,
    _sets,
    best,
    load_space,
    next_round,
    ranked,
    refined,
)
from tests.conftest import WriteRecipe


def _result(name: str, passed: bool, score: float | None) -> TrialResult:
    return TrialResult(name, {}, "", 0 if passed else 3, passed, "snr_db", score, score, 1.0)


def test_a_grid_is_every_combination_after_the_recipe_as_written(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("calibration.method: [min-max, mse]\ncalibration.num_samples: [100, 400]\n")
    [space] = load_space(path).rounds
    assert space[0] == AS_WRITTEN and len(space) == 5
    assert space[4] == Trial(
        "calibration.method=mse, calibration.num_samples=400",
        {"calibration.method": "mse", "calibration.num_samples": 400},
    )


def test_a_list_of_named_trials(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("- name: tight\n  set: {calibration.method: percentile, calibration.percentile: 99.9}\n")
    [space] = load_space(path).rounds
    assert space[1] == Trial("tight", {"calibration.method": "percentile", "calibration.percentile": 99.9})


def test_rounds_after_the_first_refine_the_best_so_far(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(
        "rounds:\n- calibration.method: [mse]\n- - name: gptq\n    set: {calibration.weight_rounding: gptq}\n"
    )
    assert load_space(path) == Space(
        [
            [AS_WRITTEN, Trial("calibration.method=mse", {"calibration.method": "mse"})],
            [Trial("gptq", {"calibration.weight_rounding": "gptq"})],
        ]
    )
    mse = TrialResult("mse", {"calibration.method": "mse"}, "", 0, True, "snr_db", 20.0, 20.0, 1.0)
    gptq = Trial("gptq", {"calibration.weight_rounding": "gptq"})
    assert refined(mse, gptq) == Trial(
        "mse + gptq", {"calibration.method": "mse", "calibration.weight_rounding": "gptq"}
    )
    assert refined(_result("recipe as written", True, 10.0), gptq) == gptq  # nothing to build on
    assert refined(None, gptq) == gptq  # no trial built


@pytest.mark.parametrize(
    "text", ["calibration.method: mse\n", "[]\n", "- name: x\n", "{a: []}\n", "{{\n", "rounds: []\n", "rounds: [[]]\n"]
)
def test_anything_else_is_not_a_search_space(tmp_path: Path, text: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(BadInputError, match="search space") as raised:
        load_space(path)
    assert "fix: write a grid" in str(raised.value)


def test_the_best_passes_the_gates_then_scores_highest_and_ties_go_to_the_earlier() -> None:
    trials = [_result("a", True, 30.0), _result("b", False, 40.0), _result("c", True, 31.0), _result("d", True, 31.0)]
    assert best(trials).name == "c"
    assert best([_result("a", False, 20.0), _result("b", False, 25.0)]).name == "b"
    assert best([_result("a", False, None)]) is None
    tied = [
        TrialResult("a", {}, "", 0, True, "accuracy", 0.97, 25.0, 1.0),
        TrialResult("b", {}, "", 0, True, "accuracy", 0.97, 31.0, 1.0),
    ]
    assert best(tied).name == "b"  # the same accuracy: the better SNR


def test_later_rounds_refine_each_of_the_two_best_and_never_repeat_a_trial() -> None:
    """A beam of two: rapidocr_cls's best range method alone (mse) was not the best base for the int8 remedies
    (README: the corpus tune)."""
    done = [
        TrialResult("recipe as written", {}, "", 0, True, "snr_db", 16.6, 16.6, 1.0),
        TrialResult("mse", {"calibration.method": "mse"}, "", 0, True, "snr_db", 18.9, 18.9, 1.0),
        TrialResult("p", {"calibration.method": "percentile"}, "", 0, True, "snr_db", 18.3, 18.3, 1.0),
        TrialResult("broken", {"calibration.num_samples": 0}, "", 2, False, None, None, None, 1.0),
    ]
    assert [r.name for r in ranked(done)] == ["mse", "p", "recipe as written"]  # a trial that did not build is out
    gptq = Trial("gptq", {"calibration.weight_rounding": "gptq"})
    also_mse = Trial("mse again", {"calibration.method": "mse"})
    mse_gptq = Trial("mse + gptq", {"calibration.method": "mse", "calibration.weight_rounding": "gptq"})
    p_gptq = Trial("p + gptq", {"calibration.method": "percentile", "calibration.weight_rounding": "gptq"})
    assert next_round(done, [gptq, also_mse], beam=2) == [mse_gptq, p_gptq]  # mse again: already built
    assert next_round(done, [gptq, also_mse], beam=3) == [mse_gptq, p_gptq, gptq]  # on the recipe as written: alone
    assert next_round(done[:1], [gptq], beam=2) == [gptq]
    assert next_round(done[3:], [gptq], beam=2) == [gptq]  # no trial built: the refinements alone


def test_trials_that_built_the_same_int8_model_are_one_base() -> None:
    """EfficientNet-Lite0: equalization left the model as it was, so equalization + bias correction built what bias
    correction alone built; refining both would have spent the beam on one model (and missed GPTQ alone, the best)."""

    def built(name: str, settings: dict[str, Any], snr: float, model: str) -> TrialResult:
        return TrialResult(name, settings, "", 0, True, "snr_db", snr, snr, 1.0, model)

    equalize, correct = {"legalize.equalize": True}, {"legalize.bias_correction": True}
    done = [
        built("recipe as written", {}, 17.6, "m0"),
        built("equalization", equalize, 17.6, "m0"),
        built("bias correction", correct, 19.3, "m1"),
        built("both", {**equalize, **correct}, 19.3, "m1"),
    ]
    gptq = Trial("gptq", {"calibration.weight_rounding": "gptq"})
    assert next_round(done, [gptq], beam=2) == [
        Trial("bias correction + gptq", {**correct, **gptq.settings}),
        gptq,  # on the recipe as written, the earlier of the two trials that built its model
    ]


def test_settings_become_set_options_of_yaml_values() -> None:
    options = _sets({"calibration.method": "percentile", "calibration.percentile": 99.9})
    assert options == ["--set", 'calibration.method="percentile"', "--set", "calibration.percentile=99.9"]
    assert {k: yaml.safe_load(v) for k, _, v in (o.partition("=") for o in options[1::2])} == {
        "calibration.method": "percentile",
        "calibration.percentile": 99.9,
    }


@pytest.mark.slow
def test_tuning_digits_with_hot_calibration_pixels_chooses_percentile(
    write_recipe: WriteRecipe, digits_dir: Path, tmp_path: Path
) -> None:
    with np.load(digits_dir / "calibration.npz") as data:
        x, y = data["x"].astype(np.float32), data["y"]
    x[:10, 3, 3] = 40 * 255.0  # a hot pixel in ten images: forty times the brightest value
    np.savez(tmp_path / "hot.npz", x=x, y=y)

    def edit(recipe: dict[str, Any]) -> None:
        recipe["calibration"]["data"]["path"] = str(tmp_path / "hot.npz")
        recipe["calibration"]["num_samples"] = 50

    recipe = write_recipe(edit)
    space = tmp_path / "space.yaml"
    space.write_text("- name: percentile\n  set: {calibration.method: percentile, calibration.percentile: 99.9}\n")
    result = CliRunner().invoke(app, ["tune", str(recipe), "--space", str(space), "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    tune = json.loads((tmp_path / "t" / "tune.json").read_text())
    as_written, percentile = tune["trials"]
    assert tune["best"] == "percentile" and percentile["snr_db"] > as_written["snr_db"] + 3, tune
    assert percentile["metric"] == "accuracy" and percentile["passed"]
    assert len(percentile["int8_sha256"]) == 64 and percentile["int8_sha256"] != as_written["int8_sha256"]
    tuned = yaml.safe_load((tmp_path / "recipe.tuned.yaml").read_text())
    assert tuned["calibration"]["method"] == "percentile" and tuned["calibration"]["percentile"] == 99.9
    assert "percentile" in (tmp_path / "t" / "tune.md").read_text()
    assert 'data-plot="tune"' in (tmp_path / "t" / "tune.html").read_text()


def test_the_default_space_tries_the_graph_remedies_only_on_graphs_it_can_rewrite() -> None:
    """Equalization, bias correction, and both (bias correction cancels the rounding error equalization moves)
    for ONNX and torch sources, beside the range methods; a Keras model has no ONNX graph. Then the int8 model's
    remedies and more samples, on the best of those, for every framework."""
    from compiler_kit.tune import default_space

    assert default_space("keras") == Space([RANGES, REFINEMENTS])
    refinements = [trial.settings for trial in REFINEMENTS]
    assert {"calibration.bias_correction": "empirical"} in refinements
    assert {"calibration.weight_rounding": "gptq", "calibration.bias_correction": "empirical"} in refinements
    first, second = default_space("onnx").rounds
    remedies = {trial.name: trial.settings for trial in first[len(RANGES) :]}
    assert remedies == {
        "cross-layer equalization": {"legalize.equalize": True},
        "bias correction": {"legalize.bias_correction": True},
        "cross-layer equalization + bias correction": {"legalize.equalize": True, "legalize.bias_correction": True},
    }
    assert second == REFINEMENTS and default_space("onnx").size == 7 + 2 * 4  # the refinements on the two best
    assert default_space("torch") == default_space("onnx")
    assert not any(
        key.startswith("legalize.") for round_ in default_space("keras").rounds for t in round_ for key in t.settings
    )


def test_a_malformed_set_or_space_ends_in_exit_2_with_one_message(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: x\n")
    result = CliRunner().invoke(app, ["build", str(recipe), "--set", "calibration.method"])
    assert result.exit_code == 2 and result.output.count("error: ") == 1, result.output
    assert "error: --set 'calibration.method' is not KEY=VALUE" in result.output and "fix: " in result.output
    space = tmp_path / "space.yaml"
    space.write_text("calibration.method: mse\n")
    assert CliRunner().invoke(app, ["tune", str(recipe), "--space", str(space)]).exit_code == 2  # the recipe first


@pytest.mark.slow
def test_when_no_trial_builds_tune_exits_2_and_names_where_to_look(write_recipe: WriteRecipe, tmp_path: Path) -> None:
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a keras file")
    recipe = write_recipe(lambda r: r["source"].update(path=str(broken)))
    space = tmp_path / "space.yaml"
    space.write_text("- name: mse\n  set: {calibration.method: mse}\n")
    result = CliRunner().invoke(app, ["tune", str(recipe), "--space", str(space), "--out", str(tmp_path / "t")])
    assert result.exit_code == 2, result.output
    assert "error: no trial built: see the trials' build.log under trials/" in result.output
    tune = json.loads((tmp_path / "t" / "tune.json").read_text())
    assert tune["best"] is None and [t["exit_code"] for t in tune["trials"]] == [2, 2]
