"""Edge TPU legalization: exact rewrites of an ONNX graph (ONNX and torch sources) into constructs that onnx2tf and
the TFLite converter lower to ops the Edge TPU compiler maps (see rewrites.py for what each fixes and why).

Every rewrite that changes the graph is checked at once: onnxruntime runs the model before any rewrite and after
this one on the same seeded inputs, and a rewrite that moves an output by more than float rounding is undone and
reported as `reverted` (a bug in ckit, never silently kept). The report lists what was rewritten, where, how often,
and that float cost. The float TFLite model is then compared with the source on real data by the verify stage.
The one rewrite that is not exact, bias correction (a quantization remedy), moves the outputs on purpose: it is
undone only when it breaks the graph or leaves outputs that no longer compare, and its float cost is reported.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compiler_kit.errors import BadInputError, describe_exception
from compiler_kit.legalize import bias_correction  # noqa: F401  registers its rewrite (after rewrites.py's)
from compiler_kit.legalize.graph import Graph, RemedyData
from compiler_kit.legalize.rewrites import REWRITES, Rewrite

CHECK_SEED = 0
# Exact rewrites differ from the source only by float rounding (another summation order, 1/6 one step lower),
# amplified through up to a few hundred layers: 2.4e-4 was measured on a text detector; a wrong rewrite moves
# outputs by whole percents.
MAX_RELATIVE_ERROR = 1e-3
NODES_LISTED = 10


@dataclass
class Legalization:
    """The legalized model, what each rewrite did, and every output's shape as onnxruntime computed it."""

    model: Any
    rewrites: list[dict[str, Any]] = field(default_factory=list)
    output_shapes: dict[str, list[int]] = field(default_factory=dict)  # -1 where only the converter knows
    enabled: bool = True
    unchecked: str = ""  # why no rewrite could be checked (and none was applied)

    def as_dict(self) -> dict[str, Any]:
        applied = [row for row in self.rewrites if row["status"] == "applied"]
        return {
            "enabled": self.enabled,
            **({"not_applied": self.unchecked} if self.unchecked else {}),
            "applied": sum(row["count"] for row in applied),
            "max_relative_error": max((row["max_relative_error"] for row in applied), default=0.0),
            "rewrites": self.rewrites,
        }


def legalize(
    model: Any,
    skip: frozenset[str] = frozenset(),
    enabled: bool = True,
    opt_in: frozenset[str] = frozenset(),
    data: RemedyData | None = None,
) -> Legalization:
    """Apply every registered rewrite not in `skip` (none when not `enabled`) to a copy of `model`, and the opt-in
    ones (quantization remedies) named in `opt_in`; `data`: the calibration samples bias correction needs. A model
    that onnxruntime cannot run is left as it is (no rewrite can be checked): the converter then says what it makes
    of it, and its output shapes come from ONNX shape inference."""
    feeds = sample_feeds(model)
    try:
        reference = run_onnx(model, feeds, "the model")
    except BadInputError as exc:
        return Legalization(model, output_shapes=inferred_output_shapes(model), enabled=False, unchecked=str(exc))
    found = Legalization(model, output_shapes={name: list(v.shape) for name, v in reference.items()}, enabled=enabled)
    for rewrite in REWRITES.values() if enabled else ():
        if rewrite.opt_in and rewrite.name not in opt_in:
            continue
        if rewrite.name in skip:
            found.rewrites.append(_row(rewrite.name, "skipped (legalize.skip)", []))
            continue
        trial, nodes = copy.deepcopy(found.model), []
        try:  # a remedy runs the model itself (bias correction), so applying can fail like checking
            nodes = rewrite.apply(Graph(trial, data))
            if not nodes:
                continue
            error = relative_error(reference, run_onnx(trial, feeds, f"the model after rewrite {rewrite.name}"))
            status = _status(rewrite, error)
        except BadInputError as exc:  # a rewrite that breaks the graph is ckit's bug: undone, never the build's end
            error, status = float("inf"), f"reverted: {str(exc).splitlines()[0]}"
        found.rewrites.append(_row(rewrite.name, status, nodes, error))
        if status == "applied":
            found.model = trial
    return found


def _status(rewrite: Rewrite, error: float) -> str:
    """An exact rewrite keeps the outputs to float rounding; one that moves them on purpose must still leave outputs
    that compare (the same shapes, NaN only where the source has NaN)."""
    kept = error <= MAX_RELATIVE_ERROR or (not rewrite.exact and math.isfinite(error))
    return "applied" if kept else "reverted: changed the outputs"


def _row(name: str, status: str, nodes: list[str], error: float = 0.0) -> dict[str, Any]:
    return {
        "name": name,
        "summary": REWRITES[name].summary,
        "exact": REWRITES[name].exact,
        "status": status,
        "count": len(nodes),
        "nodes": nodes[:NODES_LISTED],
        "max_relative_error": error if math.isfinite(error) else None,  # None: not comparable (JSON has no inf)
    }


def inferred_output_shapes(model: Any) -> dict[str, list[int]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model).graph.output
    return {value.name: [d.dim_value or -1 for d in value.type.tensor_type.shape.dim] for value in inferred}


def sample_feeds(model: Any) -> dict[str, np.ndarray]:
    """Seeded inputs of the model's (static) input shapes: standard normal floats, zeros for integer inputs."""
    from onnx import helper

    rng = np.random.default_rng(CHECK_SEED)
    initializers = {init.name for init in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))
        shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
        feeds[value.name] = (
            rng.standard_normal(shape).astype(dtype) if np.issubdtype(dtype, np.floating) else np.zeros(shape, dtype)
        )
    return feeds


def run_onnx(model: Any, feeds: dict[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    """The model's outputs by name, from onnxruntime on the CPU."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        return dict(zip(names, session.run(names, feeds), strict=True))
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / RuntimeException types
        raise BadInputError(
            f"onnxruntime cannot run {what} ({describe_exception(exc)})",
            fix="check that the model runs in onnxruntime at the recipe's input shape; set legalize.enabled: false "
            "if a rewrite is at fault (and report it)",
        ) from None


def relative_error(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> float:
    """The largest absolute difference over every output, relative to that output's largest magnitude."""
    worst = 0.0
    for name, expected in reference.items():
        got = candidate.get(name)
        if got is None or got.shape != expected.shape:
            return float("inf")
        expected64, got64 = expected.astype(np.float64), got.astype(np.float64)
        finite = np.isfinite(expected64)
        if not np.array_equal(finite, np.isfinite(got64)):
            return float("inf")
        scale = max(float(np.max(np.abs(expected64[finite]), initial=0.0)), 1e-12)
        worst = max(worst, float(np.max(np.abs(got64 - expected64)[finite], initial=0.0)) / scale)
    return worst
