"""compiler_kit.recipe: loading, defaults, path resolution and every kind of bad recipe (exit code 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from compiler_kit.errors import EXIT_BAD_INPUT, BadInputError
from compiler_kit.recipe import (
    Quantization,
    Recipe,
    json_schema,
    load_recipe,
    parse_overrides,
    set_dotted,
    with_devices,
)

# Written by hand so that every line number asserted below can be read off this text.
RECIPE = """\
name: digits_keras
source:
  framework: keras
  path: models/digits_cnn.keras
inputs:
  - name: image
    shape: [1, 16, 16, 1]
    layout: NHWC
calibration:
  data:
    path: ../data/calibration.npz
    samples_key: x
  num_samples: 200
  seed: 0
  preprocess:
    scale: 0.00392156862745098
verify:
  data:
    path: data/eval.npz
    samples_key: x
    labels_key: y
  threads: 1
gates:
  min_snr_db: 15
  max_latency_p50_ms:
    tflite-int8: 5.0
"""


def write(folder: Path, text: str = RECIPE, *replacements: tuple[str, str], name: str = "recipe.yaml") -> Path:
    """Write the recipe text into `folder`, each (old, new) replacing one unique piece of it."""
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def bad_input(path: Path) -> str:
    """Load a recipe that must be refused; return the message."""
    with pytest.raises(BadInputError) as caught:
        load_recipe(path)
    assert caught.value.exit_code == EXIT_BAD_INPUT == 2
    return str(caught.value)


def line_of(text: str, fragment: str) -> int:
    lines = [number for number, line in enumerate(text.splitlines(), 1) if fragment in line]
    assert len(lines) == 1, fragment
    return lines[0]


# --- a valid recipe -------------------------------------------------------------------------------------------


def test_valid_recipe_resolves_relative_paths_against_the_recipe_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "project" / "recipes"
    folder.mkdir(parents=True)
    write(folder)
    monkeypatch.chdir(tmp_path)  # the working directory must not matter, only the recipe's folder

    recipe = load_recipe(Path("project/recipes/recipe.yaml"))

    assert recipe.name == "digits_keras"
    assert recipe.source.path == folder.resolve() / "models" / "digits_cnn.keras"
    assert recipe.calibration.data.path == (tmp_path / "project" / "data" / "calibration.npz").resolve()
    assert recipe.verify.data.path == folder.resolve() / "data" / "eval.npz"
    assert recipe.inputs[0].shape == [1, 16, 16, 1]
    assert recipe.inputs[0].layout == "NHWC"
    assert recipe.calibration.preprocess.scale == pytest.approx(1 / 255)
    assert recipe.gates.min_snr_db == 15.0
    assert recipe.gates.max_latency_p50_ms == {"tflite-int8": 5.0}
    assert recipe.build_dir(Path("project/recipes/recipe.yaml")) == folder.resolve() / "build" / "digits_keras"


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    model = tmp_path / "elsewhere" / "model.keras"
    recipe = load_recipe(
        write(tmp_path, RECIPE, ("path: models/digits_cnn.keras", f"path: {model}"), ("threads: 1", "threads: 2"))
    )
    assert recipe.source.path == model
    assert recipe.verify.threads == 2


def test_output_dir_is_resolved_and_used_as_build_dir(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, RECIPE + "output:\n  dir: out/b1\n"))
    assert recipe.output.dir == tmp_path.resolve() / "out" / "b1"
    assert recipe.build_dir(tmp_path / "recipe.yaml") == tmp_path.resolve() / "out" / "b1"


def test_defaults_are_filled_in(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path))

    assert recipe.quantization == Quantization()
    assert recipe.quantization.mode == "int8"
    assert recipe.quantization.input_type == "int8"
    assert recipe.quantization.output_type == "int8"
    assert recipe.quantization.granularity == "per-channel"
    assert recipe.inputs[0].dtype == "float32"
    assert recipe.calibration.data.format == "auto"
    assert recipe.calibration.data.labels_key is None
    assert recipe.calibration.preprocess.mean == [0.0]
    assert recipe.calibration.preprocess.std == [1.0]
    assert recipe.calibration.preprocess.color == "rgb"
    assert recipe.calibration.preprocess.resize is None
    assert recipe.verify.num_samples is None
    assert recipe.verify.seed == 0
    assert (recipe.verify.latency.warmup, recipe.verify.latency.runs) == (10, 100)
    assert recipe.gates.max_accuracy_drop_pp is None
    assert recipe.gates.min_cosine is None
    assert recipe.output.dir is None


def test_minimal_recipe_gets_default_num_samples_and_gates(tmp_path: Path) -> None:
    text = "\n".join(line for line in RECIPE.splitlines() if "num_samples" not in line)
    text = text[: text.index("gates:")]
    recipe = load_recipe(write(tmp_path, text))
    assert recipe.calibration.num_samples == 200
    assert recipe.gates.max_latency_p50_ms == {}
    assert recipe.gates.min_snr_db is None


# --- unknown keys: path, file, line and a suggestion ----------------------------------------------------------


def test_misspelled_nested_key_names_path_file_line_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE, ("  num_samples: 200", "  num_sample: 200"))
    message = bad_input(path)
    assert line_of(RECIPE, "num_samples: 200") == 13
    assert f"{path}:13: calibration.num_sample: unknown key; did you mean 'num_samples'?" in message


def test_misspelled_top_level_key_names_line_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE, ("gates:", "gate:"))
    message = bad_input(path)
    assert line_of(RECIPE, "gates:") == 23
    assert f"{path}:23: gate: unknown key; did you mean 'gates'?" in message


def test_misspelled_key_inside_a_list_item(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE, ("    layout: NHWC", "    layuot: NHWC"))
    assert f"{path}:8: inputs.0.layuot: unknown key; did you mean 'layout'?" in bad_input(path)


def test_misspelled_key_in_data_section(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE, ("    labels_key: y", "    label_key: y"))
    assert f"{path}:21: verify.data.label_key: unknown key; did you mean 'labels_key'?" in bad_input(path)


def test_unknown_key_without_close_match_lists_the_valid_keys(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE + "quantization:\n  zzzz: 1\n")
    message = bad_input(path)
    assert f"{path}:28: quantization.zzzz: unknown key; valid keys: mode, input_type, output_type, granularity" in (
        message
    )
    assert "did you mean" not in message


def test_every_problem_is_reported_with_its_own_line(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE, ("  seed: 0", "  sed: 0"), ("  threads: 1", "  thread: 1"))
    lines = bad_input(path).splitlines()
    assert lines[0] == "invalid recipe"
    assert f"  {path}:14: calibration.sed: unknown key; did you mean 'seed'?" in lines
    assert f"  {path}:22: verify.thread: unknown key; did you mean 'threads'?" in lines
    assert lines[3] == "  fix: correct the keys named above; `ckit schema` lists every key"
    assert len(lines) == 4


# --- YAML and file problems -----------------------------------------------------------------------------------


def test_yaml_syntax_error_reports_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE, ("  seed: 0", "  seed: 0: 1"))
    message = bad_input(path)
    assert message.startswith(f"{path}:14: YAML syntax error: mapping values are not allowed here")
    assert "fix: fix the YAML at that line" in message


def test_unclosed_flow_sequence_reports_where_it_starts(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE, ("shape: [1, 16, 16, 1]", "shape: [1, 16, 16, 1"))
    message = bad_input(path)
    assert message.startswith(f"{path}:8: YAML syntax error: expected ',' or ']'")
    assert "(while parsing a flow sequence that starts at line 7)" in message


@pytest.mark.parametrize("text", ["- name: a\n- name: b\n", "just a string\n", "", "# only a comment\n"])
def test_non_mapping_yaml_is_refused(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    assert bad_input(path) == (
        f"{path}: a recipe must be a YAML mapping of sections (name, source, inputs, ...)\n"
        "  fix: start from `ckit init MODEL` or recipes/digits_keras.yaml"
    )


def test_missing_recipe_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert bad_input(path) == f"{path}: recipe file not found\n  fix: check the path"


def test_recipe_path_that_is_a_folder(tmp_path: Path) -> None:
    assert bad_input(tmp_path).startswith(f"{tmp_path}: cannot read the recipe:")


def test_recipe_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    assert bad_input(path).startswith(f"{path}: cannot read the recipe:")


# --- wrong values ---------------------------------------------------------------------------------------------


def test_wrong_type_names_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE, ("num_samples: 200", "num_samples: many"))
    message = bad_input(path)
    assert f"{path}:13: calibration.num_samples: Input should be a valid integer" in message


def test_non_integer_in_shape_names_the_element(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE, ("shape: [1, 16, 16, 1]", "shape: [1, x]"))
    message = bad_input(path)
    assert f"{path}:7: inputs.0.shape.1: Input should be a valid integer" in message


def test_non_positive_num_samples(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE, ("num_samples: 200", "num_samples: 0"))
    assert f"{path}:13: calibration.num_samples: Input should be greater than 0" in bad_input(path)


def test_bad_name_pattern(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE, ("name: digits_keras", "name: digits keras/1"))
    assert f"{path}:1: name: String should match pattern" in bad_input(path)


def test_gate_out_of_range(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE, ("  min_snr_db: 15", "  min_top1_agreement: 1.5"))
    assert f"{path}:24: gates.min_top1_agreement: Input should be less than or equal to 1" in bad_input(path)


def test_missing_required_section(tmp_path: Path) -> None:
    lines = RECIPE.splitlines(keepends=True)
    start, end = line_of(RECIPE, "verify:"), line_of(RECIPE, "gates:")
    path = write(tmp_path, "".join(lines[: start - 1] + lines[end - 1 :]))
    message = bad_input(path)
    assert f"{path}:1: verify: Field required" in message
    assert message.count("Field required") == 1


def test_missing_required_field_in_a_section(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE, ("  framework: keras\n", ""))
    assert f"{path}:2: source.framework: Field required" in bad_input(path)


def test_unsupported_framework_lists_the_choice(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE, ("framework: keras", "framework: pytorch"))
    assert f"{path}:3: source.framework: Input should be 'keras'" in bad_input(path)


def test_batch_dimension_other_than_one_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE, ("shape: [1, 16, 16, 1]", "shape: [2, 16, 16, 1]"))
    message = bad_input(path)
    assert f"{path}:6: inputs.0:" in message
    assert "the batch dimension must be 1 (static, as the Edge TPU needs), got [2, 16, 16, 1]" in message


def test_nchw_layout_needs_a_4d_shape(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE, ("shape: [1, 16, 16, 1]", "shape: [1, 16]"), ("layout: NHWC", "layout: NCHW"))
    message = bad_input(path)
    assert f"{path}:6: inputs.0:" in message
    assert "layout NCHW needs a 4-D shape, got [1, 16]" in message


def test_2d_shape_without_layout_is_accepted(tmp_path: Path) -> None:
    recipe = load_recipe(
        write(tmp_path, RECIPE, ("shape: [1, 16, 16, 1]", "shape: [1, 16]"), ("    layout: NHWC\n", ""))
    )
    assert recipe.inputs[0].shape == [1, 16]
    assert recipe.inputs[0].layout is None


def test_two_inputs_are_refused(tmp_path: Path) -> None:
    second = "  - name: other\n    shape: [1, 4]\ncalibration:"
    path = write(tmp_path, RECIPE, ("calibration:", second))
    assert f"{path}:5: inputs: List should have at most 1 item after validation, not 2" in bad_input(path)


def test_unknown_runner_in_latency_gate(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE, ("tflite-int8: 5.0", "tflite-int16: 5.0"))
    message = bad_input(path)
    assert f"{path}:26: gates.max_latency_p50_ms.tflite-int16.[key]:" in message
    assert "Input should be 'source', 'onnx', 'tflite-float', 'tflite-int8' or 'edgetpu'" in message


def test_non_positive_latency_limit(tmp_path: Path) -> None:
    path = write(tmp_path, RECIPE, ("tflite-int8: 5.0", "tflite-int8: 0"))
    assert f"{path}:26: gates.max_latency_p50_ms.tflite-int8: Input should be greater than 0" in bad_input(path)


# --- schema and hash ------------------------------------------------------------------------------------------


def test_json_schema_has_the_top_level_sections() -> None:
    schema = json_schema()
    assert set(schema["properties"]) == {
        "name",
        "source",
        "inputs",
        "calibration",
        "legalize",
        "quantization",
        "verify",
        "edgetpu",
        "gates",
        "output",
    }
    assert set(schema["required"]) == {"name", "source", "inputs", "calibration", "verify"}
    assert schema["additionalProperties"] is False
    calibration = schema["$defs"]["Calibration"]["properties"]
    assert calibration["num_samples"]["default"] == 200
    assert "description" in calibration["num_samples"]


def test_sha256_is_stable_for_equal_recipes(tmp_path: Path) -> None:
    first = load_recipe(write(tmp_path, name="a.yaml"))
    # Same content, different spelling: flow style, extra comment, key order, explicit defaults.
    reordered = RECIPE.replace("  seed: 0\n", "") + "quantization: {mode: int8, granularity: per-channel}  # same\n"
    reordered = reordered.replace("  num_samples: 200", "  seed: 0  # moved up\n  num_samples: 200")
    second = load_recipe(write(tmp_path, reordered, name="b.yaml"))
    assert reordered.index("seed: 0") < reordered.index("num_samples: 200")
    assert first == second
    assert first.sha256() == second.sha256()
    assert len(first.sha256()) == 64
    assert set(first.sha256()) <= set("0123456789abcdef")


@pytest.mark.parametrize(
    "change",
    [
        ("seed: 0", "seed: 1"),
        ("min_snr_db: 15", "min_snr_db: 16"),
        ("path: data/eval.npz", "path: data/eval2.npz"),
        ("layout: NHWC", "layout: NCHW"),
    ],
)
def test_sha256_changes_when_a_value_changes(tmp_path: Path, change: tuple[str, str]) -> None:
    base = load_recipe(write(tmp_path, name="a.yaml"))
    changed = load_recipe(write(tmp_path, RECIPE, change, name="b.yaml"))
    assert changed != base
    assert changed.sha256() != base.sha256()


def test_sha256_depends_on_the_resolved_paths(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = load_recipe(write(tmp_path / "one"))
    two = load_recipe(write(tmp_path / "two"))
    assert one.sha256() != two.sha256()  # same text, different folder: the data and model are other files


def test_recipe_is_frozen(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path))
    with pytest.raises(ValidationError, match="frozen"):
        recipe.name = "other"  # type: ignore[misc]
    assert isinstance(recipe, Recipe)


# --- what YAML accepts silently or reads its own way ----------------------------------------------------------


def test_a_key_given_twice_names_both_lines(tmp_path: Path) -> None:
    message = bad_input(write(tmp_path, RECIPE, ("  threads: 1\n", "  threads: 1\n  seed: 4\n  threads: 2\n")))
    first, second = line_of(RECIPE, "threads: 1"), line_of(RECIPE, "threads: 1") + 2
    assert message.startswith(f"{tmp_path / 'recipe.yaml'}:{second}: key 'threads' is given twice")
    assert f"(lines {first} and {second})" in message and "fix: keep one of them" in message


def test_the_same_key_in_two_sections_is_not_a_duplicate(tmp_path: Path) -> None:
    assert load_recipe(write(tmp_path)).calibration.data.samples_key == "x"  # samples_key in two data sections


def test_compile_off_written_plainly_is_off(tmp_path: Path) -> None:
    """YAML 1.1 reads a bare `off` as false; the README and `ckit init` write it that way."""
    recipe = load_recipe(write(tmp_path, RECIPE, ("gates:\n", "edgetpu:\n  compile: off\ngates:\n")))
    assert recipe.edgetpu.compile == "off"
    assert "compile" in bad_input(write(tmp_path, RECIPE, ("gates:\n", "edgetpu:\n  compile: on\ngates:\n")))


def test_a_tagged_value_that_cannot_be_read_names_its_line_and_tag(tmp_path: Path) -> None:
    message = bad_input(write(tmp_path, RECIPE, ("  seed: 0\n", "  seed: !!timestamp x\n")))
    assert message.startswith(f"{tmp_path / 'recipe.yaml'}:{line_of(RECIPE, 'seed: 0')}: a YAML value with an explicit")
    assert "(!!timestamp x)" in message and "AttributeError" not in message and "fix: drop the tag" in message


def test_set_overrides_are_yaml_values_at_dotted_keys() -> None:
    overrides = parse_overrides(["calibration.method=mse", "verify.num_samples=100", "edgetpu.compile=off", "a.b="])
    # YAML as in a recipe file: off is a boolean there too (and the schema reads it as "off")
    assert overrides == {"calibration.method": "mse", "verify.num_samples": 100, "edgetpu.compile": False, "a.b": ""}
    data: dict = {"calibration": {"num_samples": 5}}
    set_dotted(data, "calibration.method", "mse")
    set_dotted(data, "quantization.granularity", "per-tensor")  # a section the file leaves out
    assert data == {"calibration": {"num_samples": 5, "method": "mse"}, "quantization": {"granularity": "per-tensor"}}


@pytest.mark.parametrize("assignment", ["calibration.method", "=mse", "calibration..method=mse", "a.b=[1,"])
def test_a_malformed_set_is_bad_input(assignment: str) -> None:
    with pytest.raises(BadInputError) as raised:
        parse_overrides([assignment])
    assert raised.value.exit_code == EXIT_BAD_INPUT and "fix:" in str(raised.value)


def test_set_inside_a_value_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="'name' is a value, not a section"):
        set_dotted({"name": "digits"}, "name.first", "x")


def test_an_override_is_validated_like_the_file(tmp_path: Path) -> None:
    path = write(tmp_path)
    assert load_recipe(path, {"calibration.method": "percentile"}).calibration.method == "percentile"
    with pytest.raises(BadInputError, match=r"calibration\.method"):
        load_recipe(path, {"calibration.method": "median"})


def test_the_int8_bias_correction_is_off_unless_asked_and_named_by_its_method(tmp_path: Path) -> None:
    path = write(tmp_path)
    assert load_recipe(path).calibration.bias_correction == "none"
    assert load_recipe(path, {"calibration.bias_correction": "empirical"}).calibration.bias_correction == "empirical"
    with pytest.raises(BadInputError, match=r"calibration\.bias_correction"):
        load_recipe(path, {"calibration.bias_correction": True})


@pytest.mark.parametrize("percentile", [50, 100.5])
def test_a_percentile_outside_its_range_is_refused(tmp_path: Path, percentile: float) -> None:
    with pytest.raises(BadInputError, match=r"calibration\.percentile"):
        load_recipe(write(tmp_path), {"calibration.method": "percentile", "calibration.percentile": percentile})


def test_command_line_devices_join_the_recipes_and_trust_only_when_told(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path))
    added = with_devices(recipe, ["ssh://pi@coral.local", "ssh://root@10.0.0.7:2222"], accept_new_host_key=False)
    assert [d.runner_name for d in added.verify.devices] == ["device:coral", "device:10.0.0.7"]
    assert not any(d.accept_new_host_key for d in added.verify.devices)
    trusting = with_devices(recipe, ["ssh://pi@coral.local"], accept_new_host_key=True)
    assert trusting.verify.devices[0].accept_new_host_key


def test_two_command_line_devices_of_one_name_are_bad_input(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path))
    with pytest.raises(BadInputError, match=r"--device: two devices are both device:coral: give each its own `name`"):
        with_devices(recipe, ["ssh://pi@coral.local", "ssh://root@coral.lan"], accept_new_host_key=False)
