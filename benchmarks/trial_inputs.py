"""What the reliability trials (benchmarks/trials.py) build: the shipped digits recipes made absolute and small, and
the hostile inputs, generated in code: bad recipes (fields and raw YAML), bad model files, bad data, bad baseline
reports and bad `ckit inspect` arguments. Each hostile case writes its files into a folder of its own and says
what `ckit` must be run with and what the one error message must name (the file or the recipe field at fault).

The ideas come from tests/test_recipe_hostile.py, tests/frontends/test_hostile_models.py and
tests/data/test_hostile_data.py, run here through the real CLI in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.measure import REPO

RECIPES = REPO / "recipes"
SHIPPED = {"keras": "digits_keras.yaml", "onnx": "digits_onnx.yaml", "torch": "digits_torch.yaml"}
TORCH_ENTRY_POINT = "recipes.models.digits_torch:build_model"  # importable from the repo root, the trials' cwd
CALIBRATION_SAMPLES, VERIFY_SAMPLES, LATENCY = 50, 100, {"warmup": 2, "runs": 10}
DELETE = object()  # a field_case value: remove the field


def ckit(*args: str) -> list[str]:
    return [sys.executable, "-m", "compiler_kit", *args]


def shipped_recipe(kind: str, build_dir: Path) -> dict[str, Any]:
    """recipes/digits_<kind>.yaml with absolute paths, few samples and short latency runs, building into
    `build_dir`: a cold build takes seconds."""
    recipe = yaml.safe_load((RECIPES / SHIPPED[kind]).read_text())
    source = recipe["source"]
    for key in ("path", "weights"):
        if key in source:
            source[key] = str((RECIPES / source[key]).resolve())
    if kind == "torch":
        source["entry_point"] = TORCH_ENTRY_POINT
    for section in ("calibration", "verify"):
        recipe[section]["data"]["path"] = str((RECIPES / recipe[section]["data"]["path"]).resolve())
    recipe["calibration"]["num_samples"] = CALIBRATION_SAMPLES
    recipe["verify"]["num_samples"] = VERIFY_SAMPLES
    recipe["verify"]["latency"] = dict(LATENCY)
    recipe["output"] = {"dir": str(build_dir)}
    return recipe


def write_yaml(path: Path, recipe: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


# --- hostile cases ---


@dataclass(frozen=True)
class Invocation:
    args: list[str]  # after `python -m compiler_kit`
    names: list[str]  # the error message must name one of these (the file or the field at fault)


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], Invocation]  # writes the case's files into its folder


def build_args(recipe: Path, folder: Path) -> list[str]:
    return ["build", str(recipe), "--cache-dir", str(folder / "cache"), "--quiet"]


def base(folder: Path, kind: str = "keras") -> dict[str, Any]:
    return shipped_recipe(kind, folder / "build")


def set_field(recipe: dict[str, Any], field: str, value: Any) -> None:
    *parents, leaf = [int(part) if part.isdigit() else part for part in field.split(".")]
    section: Any = recipe
    for key in parents:
        section = section[key]
    if value is DELETE:
        del section[leaf]
    else:
        section[leaf] = value


def field_case(name: str, field: str, value: Any, names: list[str] | None = None, kind: str = "keras") -> Case:
    """The base recipe with `field` (dotted) set to `value` or deleted: the message names the field."""

    def make(folder: Path) -> Invocation:
        recipe = base(folder, kind)
        set_field(recipe, field, value)
        path = write_yaml(folder / "recipe.yaml", recipe)
        return Invocation(build_args(path, folder), names or [field])

    return Case(f"recipe-{name}", make)


RecipeText = Callable[[Path, str], str | bytes]


def text_case(name: str, text: RecipeText) -> Case:
    """A recipe file of raw text or bytes, made from the case's folder and the valid base recipe's YAML: the message
    names the file."""

    def make(folder: Path) -> Invocation:
        path = folder / "recipe.yaml"
        content = text(folder, yaml.safe_dump(base(folder), sort_keys=False))
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", errors="surrogateescape")
        return Invocation(build_args(path, folder), [str(path)])

    return Case(f"yaml-{name}", make)


def path_case(name: str, make_path: Callable[[Path], Path]) -> Case:
    """The recipe argument itself is odd (a folder, a link loop, absent): the message names that path."""

    def make(folder: Path) -> Invocation:
        path = make_path(folder)
        return Invocation(build_args(path, folder), [str(path)])

    return Case(f"recipe-path-{name}", make)


def file_case(
    name: str, field: str, write: Callable[[Path], Path], kind: str = "keras", extra: dict[str, Any] | None = None
) -> Case:
    """The base recipe with `field` pointing at the file `write(folder)` made (and the `extra` dotted fields set):
    the message names that file."""

    def make(folder: Path) -> Invocation:
        bad = write(folder)
        recipe = base(folder, kind)
        set_field(recipe, field, str(bad))
        for key, value in (extra or {}).items():
            set_field(recipe, key, value)
        path = write_yaml(folder / "recipe.yaml", recipe)
        return Invocation(build_args(path, folder), [str(bad)])

    return Case(name, make)


def inspect_case(name: str, write: Callable[[Path], Path]) -> Case:
    def make(folder: Path) -> Invocation:
        path = write(folder)
        return Invocation(["inspect", str(path)], [str(path)])

    return Case(f"inspect-{name}", make)


# --- files ---


def random_bytes(size: int, seed: int) -> bytes:
    return np.random.default_rng(seed).bytes(size)


def writer(name: str, content: Callable[[], bytes]) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(content())
        return path

    return write


def missing(name: str) -> Callable[[Path], Path]:
    return lambda folder: folder / name


def truncated(source: Path, name: str, fraction: float) -> Callable[[Path], Path]:
    return writer(name, lambda: source.read_bytes()[: max(1, int(source.stat().st_size * fraction))])


def first_bytes(source: Path, name: str, count: int) -> Callable[[Path], Path]:
    """The first `count` bytes of `source`, read when the case runs (the example models exist after `make models`,
    not when this module is imported: `make test` collects it on a clean clone)."""
    return writer(name, lambda: source.read_bytes()[:count])


def copied(source: Path, name: str) -> Callable[[Path], Path]:
    return writer(name, source.read_bytes)


def a_folder(name: str, fill: Callable[[Path], None] | None = None) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / name
        path.mkdir()
        if fill:
            fill(path)
        return path

    return write


def link_loop(name: str) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / name
        os.symlink(path.name, path)  # a link to itself: every open fails with ELOOP
        return path

    return write


def npz(name: str, **arrays: Callable[[], np.ndarray]) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / name
        np.savez(path, **{key: make() for key, make in arrays.items()})
        return path

    return write


def digits_npz(split: str) -> Path:
    return REPO / "calibration" / "digits" / f"{split}.npz"


def digits(split: str) -> dict[str, np.ndarray]:
    with np.load(digits_npz(split)) as data:
        return {key: data[key] for key in data.files}


def images(count: int = 20, shape: tuple[int, ...] = (16, 16, 1), value: float = 128.0) -> np.ndarray:
    return np.full((count, *shape), value, np.float32)


def with_value(value: float, split: str = "calibration") -> np.ndarray:
    """The digits split with one pixel of every sample set to `value`: whichever samples a build draws hold it."""
    x = digits(split)["x"].astype(np.float32)
    x[:, 5, 5, 0] = value
    return x


_KERAS_NAN = """
import sys
import keras
import numpy as np
model = keras.models.load_model(sys.argv[1], compile=False)
weights = model.get_weights()
weights[0][..., 0] = np.nan
model.set_weights(weights)
model.save(sys.argv[2])
"""


def keras_with_nan(folder: Path) -> Path:
    """The digits CNN with NaN in its first kernel, saved by Keras in a process of its own (TensorFlow's start-up
    lines stay out of the trials' output, and its memory out of the harness)."""
    path = folder / "nan.keras"
    command = [sys.executable, "-c", _KERAS_NAN, str(RECIPES / "models" / "digits_cnn.keras"), str(path)]
    subprocess.run(command, check=True, capture_output=True, cwd=REPO)
    return path


def onnx_with_nan(folder: Path) -> Path:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(RECIPES / "models" / "digits.onnx"))
    first = model.graph.initializer[0]
    values = numpy_helper.to_array(first).copy()
    values.flat[0] = np.nan
    first.CopyFrom(numpy_helper.from_array(values, first.name))
    path = folder / "nan.onnx"
    onnx.save(model, str(path))
    return path


def state_dict(change: Callable[[dict[str, Any]], None], name: str) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        import torch

        weights = torch.load(RECIPES / "models" / "digits_torch.pt", weights_only=True)
        change(weights)
        path = folder / name
        torch.save(weights, path)
        return path

    return write


def _first_key(weights: dict[str, Any]) -> str:
    return next(iter(weights))


def _non_tensor(weights: dict[str, Any]) -> None:
    weights[_first_key(weights)] = "not a tensor"


def _drop_one(weights: dict[str, Any]) -> None:
    del weights[_first_key(weights)]


def _wrong_shape(weights: dict[str, Any]) -> None:
    import torch

    weights[_first_key(weights)] = torch.zeros(3)


def _nan_weight(weights: dict[str, Any]) -> None:
    weights[_first_key(weights)].view(-1)[0] = float("nan")


def report_json(document: Any) -> Callable[[Path], Path]:
    return writer("baseline.json", lambda: json.dumps(document).encode())


def reference_report(name: str, drop_comparisons: bool = False) -> Callable[[Path], Path]:
    """A plausible ckit report: the shipped build's when one exists, else a minimal one of this schema."""

    def content() -> bytes:
        from compiler_kit.report.diff import READABLE_SCHEMA_VERSIONS

        document: dict[str, Any] = {"schema_version": max(READABLE_SCHEMA_VERSIONS), "name": name}
        document["comparisons"] = [] if drop_comparisons else [{"reference": "source", "candidate": "tflite-int8"}]
        document["latency"] = {"tflite-int8": {"p50_ms": 0.01}}
        return json.dumps(document).encode()

    return writer("baseline.json", content)


def _junk_image(folder: Path) -> None:
    (folder / "junk.png").write_bytes(random_bytes(500, 11))


def _truncated_png(folder: Path) -> None:
    from PIL import Image

    Image.new("L", (16, 16), 7).save(folder / "ok.png")
    data = (folder / "ok.png").read_bytes()
    (folder / "cut.png").write_bytes(data[: len(data) // 2])


def _text_file(folder: Path) -> None:
    (folder / "notes.txt").write_text("not an image")


def _object_npy() -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def _npy_header(shape: tuple[int, ...]) -> bytes:
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + bytes(64)


def _npz_member(data: bytes) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.npy", data)
    return buffer.getvalue()


# --- the catalogue ---

MODELS = RECIPES / "models"
KERAS_MODEL, ONNX_MODEL, TORCH_WEIGHTS = MODELS / "digits_cnn.keras", MODELS / "digits.onnx", MODELS / "digits_torch.pt"
RECIPE_TEXTS: dict[str, RecipeText] = {
    "duplicate-top-key": lambda f, valid: f"{valid}name: again\n",
    "duplicate-nested-key": lambda f, valid: valid.replace(
        "  num_samples: 50\n", "  num_samples: 50\n  seed: 1\n  seed: 2\n"
    ),
    "unclosed-bracket": lambda f, valid: "name: [digits\n",
    "bad-indentation": lambda f, valid: "name: digits\n source:\n   framework: keras\n  path: x\n",
    "tab-indent": lambda f, valid: valid.replace("\n  framework: keras", "\n\tframework: keras"),
    "timestamp-tag": lambda f, valid: valid.replace("name: digits_keras", "name: !!timestamp 2001-12-14"),
    "python-object": lambda f, valid: valid.replace(
        "name: digits_keras", f"name: !!python/object/apply:os.system ['touch {f}/sentinel']"
    ),
    "python-name": lambda f, valid: valid.replace("name: digits_keras", "name: !!python/name:os.system"),
    "custom-tag": lambda f, valid: valid.replace("name: digits_keras", "name: !custom x"),
    "undefined-alias": lambda f, valid: valid.replace("name: digits_keras", "name: *nothing"),
    "alias-bomb": lambda f, valid: _alias_bomb(),
    "deep-nesting": lambda f, valid: "name: " + "[" * 2000 + "]" * 2000 + "\n",
    "empty-file": lambda f, valid: "",
    "only-comments": lambda f, valid: "# nothing here\n",
    "a-list": lambda f, valid: "- name: digits\n- source: keras\n",
    "a-scalar": lambda f, valid: "just a string\n",
    "random-bytes": lambda f, valid: random_bytes(2000, 1),
    "nul-bytes": lambda f, valid: valid.replace("name: digits_keras", "name: digits\x00keras").encode(),
    "latin1-bytes": lambda f, valid: valid.replace("name: digits_keras", "name: d\xefgits").encode("latin-1"),
    "huge-file": lambda f, valid: valid + "# " + "x" * (1 << 20) + "\n",
    "lone-surrogate": lambda f, valid: valid.replace("samples_key: x", 'samples_key: "\\ud800"'),
    "int-tag-on-text": lambda f, valid: valid.replace("seed: 0", "seed: !!int zero"),
    "utf16": lambda f, valid: valid.encode("utf-16"),
}


def _alias_bomb() -> str:
    """Billion laughs: nine levels of nine aliases each."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


FIELD_CASES: list[tuple[str, str, Any, list[str] | None]] = [
    ("missing-name", "name", DELETE, None),
    ("missing-source", "source", DELETE, None),
    ("missing-inputs", "inputs", DELETE, None),
    ("missing-framework", "source.framework", DELETE, None),
    ("missing-calibration-data", "calibration.data", DELETE, None),
    ("missing-verify-data-path", "verify.data.path", DELETE, None),
    ("missing-input-shape", "inputs.0.shape", DELETE, None),
    ("unknown-top-key", "calibraton", {"num_samples": 5}, None),
    ("unknown-source-key", "source.pth", "x.keras", None),
    ("unknown-gate", "gates.max_snr", 3.0, None),
    ("framework-enum", "source.framework", "tensorflow", None),
    ("layout-enum", "inputs.0.layout", "NWHC", None),
    ("input-type-enum", "quantization.input_type", "int4", None),
    ("granularity-enum", "quantization.granularity", "per-chanel", None),
    ("compile-enum", "edgetpu", {"compile": "sometimes"}, ["edgetpu.compile"]),
    ("latency-runner-enum", "gates.max_latency_p50_ms", {"gpu": 1.0}, None),
    ("negative-calibration-samples", "calibration.num_samples", -5, None),
    ("zero-calibration-samples", "calibration.num_samples", 0, None),
    ("negative-verify-samples", "verify.num_samples", -1, None),
    ("negative-latency-runs", "verify.latency.runs", -10, None),
    ("negative-warmup", "verify.latency.warmup", -1, None),
    ("zero-threads", "verify.threads", 0, None),
    ("negative-seed", "calibration.seed", -1, None),
    ("negative-timeout", "edgetpu", {"timeout_sec": -1}, ["edgetpu.timeout_sec"]),
    ("string-samples", "calibration.num_samples", "many", None),
    ("float-samples", "calibration.num_samples", 1.5, None),
    ("string-gate", "gates.min_snr_db", "high", None),
    ("nan-gate", "gates.min_snr_db", float("nan"), None),
    ("negative-dimension", "inputs.0.shape", [1, -16, 16, 1], None),
    ("empty-shape", "inputs.0.shape", [], None),
    ("string-dimension", "inputs.0.shape", [1, "a", 16, 1], None),
    ("rank-9", "inputs.0.shape", [1] * 9, None),
    ("huge-shape", "inputs.0.shape", [1, 100000, 100000, 3], None),
    ("inputs-a-mapping", "inputs", {"name": "image"}, None),
    ("inputs-empty", "inputs", [], None),
    ("scale-beyond-float32", "calibration.preprocess.scale", 1e39, None),
    ("std-zero", "calibration.preprocess", {"std": [0.0]}, ["calibration.preprocess.std"]),
    ("mean-a-string", "calibration.preprocess", {"mean": "x"}, ["calibration.preprocess.mean"]),
    ("output-dir-a-list", "output.dir", ["a", "b"], None),
    ("name-climbs-out", "name", "../../escape", None),
    ("name-empty", "name", "", None),
    ("torch-without-entry-point", "source", {"framework": "torch", "weights": str(TORCH_WEIGHTS)}, ["entry_point"]),
    ("relative-gate-without-baseline", "gates.max_accuracy_below_baseline_pp", 1.0, ["gates.baseline"]),
    (
        "samples-key-absent",
        "calibration.data.samples_key",
        "nope",
        ["calibration.data.samples_key", str(digits_npz("calibration"))],
    ),
    ("labels-key-absent", "verify.data.labels_key", "nope", ["verify.data.labels_key", str(digits_npz("eval"))]),
]
MODEL_CASES: list[tuple[str, str, Callable[[Path], Path], str]] = [
    ("keras-missing", "source.path", missing("absent.keras"), "keras"),
    ("keras-empty", "source.path", writer("empty.keras", bytes), "keras"),
    ("keras-random", "source.path", writer("random.keras", lambda: random_bytes(40_000, 2)), "keras"),
    ("keras-truncated-half", "source.path", truncated(KERAS_MODEL, "half.keras", 0.5), "keras"),
    ("keras-truncated-10pct", "source.path", truncated(KERAS_MODEL, "tenth.keras", 0.1), "keras"),
    ("keras-is-onnx", "source.path", copied(ONNX_MODEL, "renamed.keras"), "keras"),
    ("keras-nan-weights", "source.path", keras_with_nan, "keras"),
    ("keras-a-folder", "source.path", a_folder("model.keras"), "keras"),
    ("keras-h5-random", "source.path", writer("random.h5", lambda: random_bytes(5000, 3)), "keras"),
    ("keras-link-loop", "source.path", link_loop("loop.keras"), "keras"),
    ("onnx-missing", "source.path", missing("absent.onnx"), "onnx"),
    ("onnx-empty", "source.path", writer("empty.onnx", bytes), "onnx"),
    ("onnx-random", "source.path", writer("random.onnx", lambda: random_bytes(30_000, 4)), "onnx"),
    ("onnx-truncated-half", "source.path", truncated(ONNX_MODEL, "half.onnx", 0.5), "onnx"),
    ("onnx-truncated-40-bytes", "source.path", first_bytes(ONNX_MODEL, "cut.onnx", 40), "onnx"),
    ("onnx-is-keras", "source.path", copied(KERAS_MODEL, "renamed.onnx"), "onnx"),
    ("onnx-nan-initializer", "source.path", onnx_with_nan, "onnx"),
    ("torch-weights-missing", "source.weights", missing("absent.pt"), "torch"),
    ("torch-weights-empty", "source.weights", writer("empty.pt", bytes), "torch"),
    ("torch-weights-random", "source.weights", writer("random.pt", lambda: random_bytes(20_000, 5)), "torch"),
    ("torch-weights-truncated", "source.weights", truncated(TORCH_WEIGHTS, "half.pt", 0.5), "torch"),
    ("torch-weights-non-tensor", "source.weights", state_dict(_non_tensor, "non_tensor.pt"), "torch"),
    ("torch-weights-missing-key", "source.weights", state_dict(_drop_one, "missing_key.pt"), "torch"),
    ("torch-weights-wrong-shape", "source.weights", state_dict(_wrong_shape, "wrong_shape.pt"), "torch"),
    ("torch-weights-nan", "source.weights", state_dict(_nan_weight, "nan.pt"), "torch"),
    ("torch-weights-are-onnx", "source.weights", copied(ONNX_MODEL, "onnx.pt"), "torch"),
]
DATA_FIELDS = {"calibration": "calibration.data.path", "verify": "verify.data.path"}
DATA_CASES: list[tuple[str, str, Callable[[Path], Path], dict[str, Any]]] = [
    ("random-npz", "calibration", writer("random.npz", lambda: random_bytes(5000, 6)), {}),
    ("empty-npz", "verify", writer("empty.npz", bytes), {}),
    ("missing-npz", "calibration", missing("absent.npz"), {}),
    ("wrong-shape", "calibration", npz("small.npz", x=lambda: images(shape=(8, 8, 1))), {}),
    ("wrong-rank", "verify", npz("flat.npz", x=lambda: images(shape=(256,)), y=lambda: np.zeros(20, np.int64)), {}),
    ("nan-sample", "calibration", npz("nan.npz", x=lambda: with_value(np.nan)), {}),
    ("inf-sample", "calibration", npz("inf.npz", x=lambda: with_value(np.inf)), {}),
    (
        "nan-verify-sample",
        "verify",
        npz("nan.npz", x=lambda: with_value(np.nan, "eval"), y=lambda: digits("eval")["y"]),
        {},
    ),
    ("zero-samples", "calibration", npz("none.npz", x=lambda: images(count=0)), {}),
    ("empty-folder", "calibration", a_folder("empty"), {}),
    ("folder-of-junk-images", "calibration", a_folder("junk", _junk_image), {}),
    ("folder-with-cut-png", "calibration", a_folder("cut", _truncated_png), {}),
    ("folder-of-text", "verify", a_folder("text", _text_file), {}),
    ("symlink-loop", "calibration", link_loop("loop.npz"), {}),
    ("a-text-file", "calibration", writer("data.txt", lambda: b"1 2 3\n"), {}),
    (
        "labels-wrong-length",
        "verify",
        npz("short_labels.npz", x=lambda: digits("eval")["x"], y=lambda: digits("eval")["y"][:50]),
        {},
    ),
    (
        "labels-2d",
        "verify",
        npz("labels_2d.npz", x=lambda: digits("eval")["x"], y=lambda: np.zeros((len(digits("eval")["x"]), 3))),
        {},
    ),
    ("labels-missing", "verify", npz("no_labels.npz", x=lambda: digits("eval")["x"]), {}),
    ("object-array", "calibration", writer("object.npy", _object_npy), {"calibration.data.samples_key": DELETE}),
    ("npy-huge-header", "calibration", writer("huge.npy", lambda: _npy_header((10**7, 100_000, 3))), {}),
    ("npz-member-not-array", "calibration", writer("member.npz", lambda: _npz_member(b"not an array")), {}),
]
BASELINE_CASES: list[tuple[str, Callable[[Path], Path], dict[str, Any]]] = [
    ("missing", missing("absent.json"), {}),
    ("not-json", writer("baseline.json", lambda: b"{not json"), {}),
    ("empty", writer("baseline.json", bytes), {}),
    ("binary", writer("baseline.json", lambda: random_bytes(300, 7)), {}),
    ("a-list", report_json([1, 2, 3]), {}),
    ("no-schema", report_json({"name": "digits_keras"}), {}),
    ("future-schema", report_json({"schema_version": 999, "name": "digits_keras"}), {}),
    ("another-model", reference_report("some_other_model"), {}),
    ("no-accuracy", reference_report("digits_keras", True), {"gates.max_accuracy_below_baseline_pp": 1.0}),
    ("deep-json", writer("baseline.json", lambda: b"[" * 100_000 + b"]" * 100_000), {}),
]
INSPECT_CASES: list[tuple[str, Callable[[Path], Path]]] = [
    ("missing", missing("absent.tflite")),
    ("empty", writer("empty.tflite", bytes)),
    ("random", writer("random.tflite", lambda: random_bytes(10_000, 8))),
    ("a-folder", a_folder("model.tflite")),
    ("onnx-file", copied(ONNX_MODEL, "digits.onnx")),
    ("keras-file", copied(KERAS_MODEL, "digits.keras")),
    ("text-file", writer("model.tflite", lambda: b"hello\n" * 10)),
    ("link-loop", link_loop("loop.tflite")),
    ("magic-then-random", writer("magic.tflite", lambda: b"\x1c\x00\x00\x00TFL3" + random_bytes(5000, 9))),
]


def hostile_cases(tflite: Path) -> list[Case]:
    """Every hostile input, in a stable order (the names are unique); `tflite` is a valid int8 model, which some
    cases truncate."""
    cases = [field_case(name, field, value, names) for name, field, value, names in FIELD_CASES]
    cases += [text_case(name, text) for name, text in RECIPE_TEXTS.items()]
    cases += [
        path_case("a-folder", a_folder("recipe.yaml")),
        path_case("missing", missing("absent.yaml")),
        path_case("link-loop", link_loop("loop.yaml")),
    ]
    cases += [file_case(f"model-{name}", field, write, kind) for name, field, write, kind in MODEL_CASES]
    cases += [
        file_case(f"data-{name}", DATA_FIELDS[where], write, extra=extra) for name, where, write, extra in DATA_CASES
    ]
    cases += [
        file_case(f"baseline-{name}", "gates.baseline", write, extra=extra) for name, write, extra in BASELINE_CASES
    ]
    cases += [inspect_case(name, write) for name, write in INSPECT_CASES]
    cases += [
        inspect_case(f"truncated-{int(f * 100)}pct", truncated(tflite, "cut.tflite", f)) for f in (0.05, 0.5, 0.9)
    ]
    cases.append(file_case("output-dir-a-file", "output.dir", writer("occupied", lambda: b"a file")))
    return cases
