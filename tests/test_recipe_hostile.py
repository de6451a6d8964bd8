"""Hostile recipes: whatever the YAML holds, `load_recipe` returns a Recipe or raises BadInputError (exit 2) naming
the file, never another exception, never runs code, and never lets the build folder leave the recipe's folder.

The property tests are derandomized (the same examples on every run, no example database) so CI is deterministic.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from compiler_kit.cli import app
from compiler_kit.errors import EXIT_BAD_INPUT, BadInputError
from compiler_kit.recipe import MAX_NESTING, MAX_RANK, MAX_RECIPE_BYTES, MAX_SAMPLE_ELEMENTS, Recipe, load_recipe

PROPERTY = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

VALID: dict[str, Any] = {
    "name": "digits",
    "source": {"framework": "keras", "path": "models/digits.keras"},
    "inputs": [{"name": "image", "shape": [1, 16, 16, 1], "layout": "NHWC"}],
    "calibration": {
        "data": {"path": "data/calibration.npz", "samples_key": "x"},
        "num_samples": 50,
        "seed": 3,
        "preprocess": {"resize": [16, 16], "color": "grayscale", "scale": 0.0039, "mean": [0.5], "std": [0.25]},
    },
    "quantization": {"input_type": "int8", "output_type": "int8", "granularity": "per-channel"},
    "verify": {
        "data": {"path": "data/eval.npz", "samples_key": "x", "labels_key": "y"},
        "threads": 2,
        "latency": {"warmup": 1, "runs": 5},
    },
    "edgetpu": {"compile": "auto", "intermediate_tensors": ["conv/Relu"], "timeout_sec": 60, "device": "usb:0"},
    "gates": {"min_snr_db": 15.0, "min_cosine": 0.99, "max_latency_p50_ms": {"tflite-int8": 5.0}},
    "output": {"dir": "out"},
}

# Pieces of YAML that safe_dump never writes: tags that would build Python objects, aliases, recursion, syntax
# errors, escapes of lone surrogates, numbers beyond float range. `{sentinel}` is a file that must never appear.
RAW_YAML = [
    "!!python/object/apply:os.system ['touch {sentinel}']",
    "!!python/object/apply:subprocess.check_call [[touch, '{sentinel}']]",
    "!!python/object/new:pathlib.Path ['{sentinel}']",
    "!!python/name:os.system",
    "!!python/module:os",
    "!!binary aGVsbG8=",
    "!!set {a: null, b: null}",
    "!!timestamp 2001-12-14",
    "!!omap [a: 1, b: 2]",
    "!!float .nan",
    "!!int 99999999999999999999999999",
    "!custom value",
    "*undefined_anchor",
    "&self [*self]",
    "&cycle {k: *cycle}",
    "{? [a, b] : c}",
    "{<<: 3}",
    "[1, 2",
    '"\\ud800"',
    '"tail \\udfff"',
    "[" * (MAX_NESTING + 5) + "]" * (MAX_NESTING + 5),
    "1e400",
    "-1e400",
    ".inf",
    "0x7fffffffffffffff",
    "'../../escape'",
    '"\\0"',
]
RAW_MARK = "__raw_yaml_{}__"

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([-1, 0, 10**100, -(10**100), 2**63, MAX_SAMPLE_ELEMENTS + 1]),
    st.floats(),
    st.text(st.characters(), max_size=12),  # any code point, lone surrogates included
    st.binary(max_size=8),
    st.sampled_from(["NHWC", "NCHW", "keras", "torch", "int8", "tflite-int8", "../x", "/etc/passwd", "a:b", "usb"]),
)
keys = st.one_of(
    st.sampled_from([*VALID, "framework", "path", "shape", "layout", "data", "resize", "<<"]),
    st.text(st.characters(), max_size=8),
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
)
trees = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=25,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile_recipes")


def check(text: str, folder: Path) -> Recipe | None:
    """The property: a Recipe, or a BadInputError that names the file; nothing else, and nothing executed."""
    path = folder / "recipe.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        recipe = load_recipe(path)
    except BadInputError as exc:
        assert exc.exit_code == EXIT_BAD_INPUT
        assert str(path) in str(exc), str(exc)
        return None
    finally:
        assert not (folder / "sentinel").exists(), "the recipe ran code"
    recipe.sha256()  # an accepted recipe is fully usable: it serialises for its hash and the report
    if recipe.output.dir is None:
        assert recipe.build_dir(path).parent == folder.resolve() / "build"
    return recipe


def dump(tree: Any, raw: dict[str, str], folder: Path, flow: bool | None = None) -> str:
    text = yaml.safe_dump(tree, sort_keys=False, allow_unicode=True, default_flow_style=flow)
    for mark, snippet in raw.items():
        text = text.replace(mark, snippet.replace("{sentinel}", str(folder / "sentinel")))
    return text


def test_the_mutation_base_is_valid(folder: Path) -> None:
    assert check(dump(VALID, {}, folder), folder) is not None


@PROPERTY
@given(tree=st.one_of(trees, st.dictionaries(keys, trees, max_size=8)), flow=st.sampled_from([None, True, False]))
def test_arbitrary_yaml_trees(folder: Path, tree: Any, flow: bool | None) -> None:
    check(dump(tree, {}, folder, flow), folder)


YAML_TOKENS = [*RAW_YAML, ": ", "- ", "\n", "  ", "? ", "&a ", "*a", "<<: "]


@PROPERTY
@given(text=st.lists(st.one_of(st.sampled_from(YAML_TOKENS), st.text()), max_size=12))
def test_arbitrary_yaml_text(folder: Path, text: list[str]) -> None:
    check("".join(text).replace("{sentinel}", str(folder / "sentinel")), folder)


# --- mutations of the valid recipe ---

Path_ = tuple[Any, ...]


def children(tree: Any) -> list[tuple[Any, Any]]:
    return list(tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else [])


def container_paths(tree: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every place in the tree that holds a value (as key paths), the root excluded."""
    found = []
    for key, value in children(tree):
        found.append((*prefix, key))
        found += container_paths(value, (*prefix, key))
    return found


def holds(tree: Any, target: Any) -> bool:
    return tree is target or any(holds(value, target) for _, value in children(tree))


def parent_of(tree: Any, where: Path_) -> Any:
    for key in where[:-1]:
        tree = tree[key]
    return tree


def drop(draw: Any, parent: Any, key: Any, recipe: dict, raw: dict[str, str]) -> None:
    del parent[key]


def replace_with_scalar(draw: Any, parent: Any, key: Any, recipe: dict, raw: dict[str, str]) -> None:
    parent[key] = draw(scalars)


def replace_with_tree(draw: Any, parent: Any, key: Any, recipe: dict, raw: dict[str, str]) -> None:
    parent[key] = draw(trees)


def replace_with_raw_yaml(draw: Any, parent: Any, key: Any, recipe: dict, raw: dict[str, str]) -> None:
    mark = RAW_MARK.format(len(raw))
    raw[mark] = draw(st.sampled_from(RAW_YAML))
    parent[key] = mark


def nest_deeply(draw: Any, parent: Any, key: Any, recipe: dict, raw: dict[str, str]) -> None:
    value = parent[key]
    for _ in range(draw(st.integers(1, MAX_NESTING + 3))):
        value = [value] if draw(st.booleans()) else {"x": value}
    parent[key] = value


def share_another_part(draw: Any, parent: Any, key: Any, recipe: dict, raw: dict[str, str]) -> None:
    """The same object in two places (safe_dump writes an anchor and an alias), but never inside itself."""
    values = [parent_of(recipe, where)[where[-1]] for where in container_paths(recipe)]
    parent[key] = draw(st.sampled_from([value for value in values if not holds(value, parent)] or [None]))


def add_key(draw: Any, parent: Any, key: Any, recipe: dict, raw: dict[str, str]) -> None:
    target = parent if isinstance(parent, dict) else recipe
    target[draw(keys)] = draw(scalars)


def huge_shape(draw: Any, parent: Any, key: Any, recipe: dict, raw: dict[str, str]) -> None:
    rank = draw(st.integers(1, MAX_RANK + 50))
    recipe["inputs"] = [{"name": "image", "shape": [1] + [draw(st.integers(1, 10**6)) for _ in range(rank - 1)]}]


MUTATIONS: list[Callable[..., None]] = [
    drop,
    replace_with_scalar,
    replace_with_tree,
    replace_with_raw_yaml,
    nest_deeply,
    share_another_part,
    add_key,
    huge_shape,
]


@st.composite
def mutated_recipes(draw: Any) -> tuple[dict[str, Any], dict[str, str]]:
    recipe, raw = copy.deepcopy(VALID), {}
    for _ in range(draw(st.integers(1, 4))):
        if not (places := container_paths(recipe)):
            break  # every key was dropped
        where = draw(st.sampled_from(places))
        draw(st.sampled_from(MUTATIONS))(draw, parent_of(recipe, where), where[-1], recipe, raw)
    return recipe, raw


@PROPERTY
@given(mutated=mutated_recipes(), flow=st.sampled_from([None, True, False]))
def test_mutations_of_a_valid_recipe(folder: Path, mutated: tuple[dict[str, Any], dict[str, str]], flow) -> None:
    recipe, raw = mutated
    accepted = check(dump(recipe, raw, folder, flow), folder)
    if accepted is not None:
        assert math.prod(accepted.inputs[0].shape) <= MAX_SAMPLE_ELEMENTS
        assert len(accepted.inputs[0].shape) <= MAX_RANK


# --- the cases the properties above are about, spelled out ---


def bad_input(text: str, folder: Path, *fragments: str) -> str:
    path = folder / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BadInputError) as raised:
        load_recipe(path)
    message = str(raised.value)
    assert raised.value.exit_code == EXIT_BAD_INPUT and str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def with_(path: str, value: Any) -> dict[str, Any]:
    """VALID with the value at a dotted path replaced."""
    recipe = copy.deepcopy(VALID)
    *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
    parent_of(recipe, (*parents, last))[last] = value
    return recipe


@pytest.mark.parametrize("tag", [t for t in RAW_YAML if t.startswith("!!python")])
def test_python_tags_are_refused_and_run_nothing(tmp_path: Path, tag: str) -> None:
    sentinel = tmp_path / "sentinel"
    bad_input(f"name: {tag.replace('{sentinel}', str(sentinel))}\n", tmp_path, "YAML syntax error", "python/")
    assert not sentinel.exists()


@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path: Path, opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    bad_input(f"name: {opening * 5000}1{closing * 5000}\n", tmp_path, f"nested more than {MAX_NESTING} levels")


def test_a_lone_surrogate_escape_is_refused(tmp_path: Path) -> None:
    text = yaml.safe_dump(VALID, sort_keys=False).replace("samples_key: x", 'samples_key: "\\ud800"')
    bad_input(text, tmp_path, "unpaired surrogate")


def test_a_huge_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    bad_input("# " + "x" * MAX_RECIPE_BYTES + "\n", tmp_path, f"larger than {MAX_RECIPE_BYTES} bytes")


def test_thousands_of_errors_are_summarised(tmp_path: Path) -> None:
    recipe = with_("gates", {f"unknown_{i}": 1 for i in range(5000)})
    message = bad_input(yaml.safe_dump(recipe), tmp_path, "... and 4980 more")
    assert len(message.splitlines()) < 30


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("inputs.0.shape", [1, 100000, 100000, 3], f"more than the {MAX_SAMPLE_ELEMENTS} allowed"),
        ("inputs.0.shape", [1] * 50, f"at most {MAX_RANK} items"),
        ("calibration.preprocess.resize", [10**6, 10**6], f"more than the {MAX_SAMPLE_ELEMENTS} allowed"),
        ("calibration.preprocess.scale", 1e300, "less than or equal to"),
        ("calibration.preprocess.std", [1e-300], "greater than or equal to"),
        ("calibration.preprocess.scale", float("nan"), "finite number"),
        ("gates.min_snr_db", float("inf"), "finite number"),
        ("calibration.seed", -1, "greater than or equal to 0"),
        ("edgetpu.timeout_sec", 10**12, "less than or equal to 86400"),
        ("verify.latency.runs", 10**12, "less than or equal to 100000"),
        ("verify.threads", 10**9, "less than or equal to 1024"),
        ("edgetpu.intermediate_tensors", ["a,b"], "edgetpu.intermediate_tensors.0"),
        ("edgetpu.intermediate_tensors", ["a\0b"], "edgetpu.intermediate_tensors.0"),
        ("source.path", "a" * 256, "path too long"),
        ("verify.data.path", "a/" * 2100, "path too long"),
    ],
)
def test_values_that_would_crash_or_exhaust_a_build_are_refused(
    tmp_path: Path, field: str, value: Any, fragment: str
) -> None:
    section = field.rsplit(".", 1)[0]  # where pydantic reports it: the field, or its section for a cross-field rule
    bad_input(yaml.safe_dump(with_(field, value), sort_keys=False), tmp_path, section, fragment)


@pytest.mark.parametrize("name", ["../../x", "..", ".", "a/../../b", "/tmp/x", "x\n", "x/", "~", "a" * 129, ""])
def test_a_name_cannot_move_the_build_folder(tmp_path: Path, name: str) -> None:
    recipe = with_("name", name)
    del recipe["output"]
    bad_input(yaml.safe_dump(recipe), tmp_path, "name")


def test_the_default_build_folder_is_build_slash_name_beside_the_recipe(tmp_path: Path) -> None:
    recipe = with_("name", "a..b")
    del recipe["output"]
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert load_recipe(path).build_dir(path) == tmp_path.resolve() / "build" / "a..b"


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("name: !!python/object/apply:os.system ['touch {sentinel}']", "python/object/apply:os.system"),
        ("name: ../../escaped", "name: String should match pattern"),
    ],
    ids=["python-tag", "name-climbing-out"],
)
def test_ckit_build_refuses_with_exit_2_and_touches_nothing(tmp_path: Path, line: str, fragment: str) -> None:
    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    recipe = folder / "recipe.yaml"
    text = yaml.safe_dump(with_("output", {}), sort_keys=False).replace("name: digits", line)
    recipe.write_text(text.replace("{sentinel}", str(tmp_path / "sentinel")))
    result = CliRunner().invoke(app, ["build", str(recipe)])
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert fragment in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "recipe.yaml"]  # no sentinel, no build folder
