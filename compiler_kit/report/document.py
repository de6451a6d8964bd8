"""The report document: versioned JSON, a public interface that CI scripts parse. Renderings derive from it.

Required keys (never renamed): schema_version, passed, artifacts{name: {path, sha256, bytes}}, comparisons[{reference,
candidate, metrics}], latency{runner: {first_ms, p50_ms, p90_ms, p99_ms, mean_ms, std_ms, runs, threads}},
gates[{name, threshold, value, passed}], tools{...}, inputs{model_sha256, recipe_sha256, datasets}.
Added keys (same schema version, old readers unaffected): legalization{enabled, applied, max_relative_error,
rewrites[{name, summary, status, count, nodes, max_relative_error}], renamed{new name: original name}}.
"""

from __future__ import annotations

import datetime
import platform
from pathlib import Path
from typing import Any

from compiler_kit import __version__, lazy
from compiler_kit.recipe import Recipe

SCHEMA_VERSION = 1
# Conversion (no quantization) should not change outputs; below this cosine the converter broke something.
CONVERSION_MIN_COSINE = 0.9999
CONVERSION_STEPS = ("onnx", "tflite-float")
TOOL_DISTRIBUTIONS = (
    "tensorflow",
    "keras",
    "torch",
    "onnx",
    "onnxruntime",
    "onnx2tf",
    "ai-edge-litert",
    "tflite-runtime",
    "numpy",
)


def tool_versions() -> dict[str, str | None]:
    tools = {"ckit": __version__, "python": platform.python_version()}
    tools.update({name: lazy.version(name) for name in TOOL_DISTRIBUTIONS if lazy.version(name)})
    return tools


def findings(comparisons: list[dict[str, Any]]) -> list[str]:
    """Plain statements about the drift, so the report says which step lost accuracy."""
    notes = []
    for comparison in comparisons:
        step, metrics = f"{comparison['reference']} -> {comparison['candidate']}", comparison["metrics"]
        if comparison["candidate"] in CONVERSION_STEPS and metrics["cosine"] < CONVERSION_MIN_COSINE:
            notes.append(
                f"conversion {step} is NOT lossless (cosine {metrics['cosine']:.6f} < {CONVERSION_MIN_COSINE}): "
                "the converter changed the model (layout or an op); look there before blaming quantization"
            )
        if metrics["accuracy_drop_pp"] is not None and metrics["accuracy_drop_pp"] > 0:
            notes.append(f"{step} loses {metrics['accuracy_drop_pp']:.2f} accuracy points")
    return notes


# Below this share of ops on the Edge TPU the model mostly runs on the host CPU: said in findings and on stderr
# whether or not a gate asks (the gate min_ops_on_edgetpu_fraction stays the user's choice).
EDGETPU_MOSTLY_CPU_FRACTION = 0.5


def edgetpu_findings(section: dict[str, Any]) -> list[str]:
    """The Edge TPU stage's verdict when most of the model stays on the CPU, with the compiler's (or the
    prediction's) first reason."""
    on_tpu, on_cpu = section.get("ops_on_edgetpu"), section.get("ops_on_cpu")
    total = (on_tpu or 0) + (on_cpu or 0)
    if on_tpu is None or not total or on_tpu / total >= EDGETPU_MOSTLY_CPU_FRACTION:
        return []
    how = "predicted by static analysis" if section.get("predicted") else "as compiled"
    failures = section.get("failures") or []
    cause = f": {failures[0]['message']} (fix: {failures[0]['advice']})" if failures else ""
    return [f"only {on_tpu} of {total} ops run on the Edge TPU ({how}){cause}"]


def legalization_findings(section: dict[str, Any]) -> list[str]:
    return [
        f"legalization rewrite {row['name']} was undone ({row['status'].removeprefix('reverted: ')}); the model "
        "was converted without it: please report the model"
        for row in section.get("rewrites", [])
        if row["status"].startswith("reverted")
    ]


def leak_findings(shared: int, verify_samples: int) -> list[str]:
    if not shared:
        return []
    return [
        f"{shared} of {verify_samples} verification samples also appear in the calibration data: calibrate on "
        "training data, never on the evaluation split, or the measured drift is optimistic"
    ]


def build_report(
    *,
    recipe: Recipe,
    recipe_path: Path,
    artifacts: dict[str, Any],
    runners: dict[str, Any],
    comparisons: list[dict[str, Any]],
    latency: dict[str, Any],
    gates: list[dict[str, Any]],
    model_sha256: str,
    datasets: dict[str, Any],
    layout: dict[str, Any],
    edgetpu: dict[str, Any],
    layers: list[dict[str, Any]],
    worst_layers: list[str],
    legalization: dict[str, Any],
) -> dict[str, Any]:
    """The report document; the pipeline adds `stage_seconds` last, once every stage but this one has run."""
    return {
        "schema_version": SCHEMA_VERSION,
        "name": recipe.name,
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "passed": all(gate["passed"] for gate in gates),
        "recipe": str(recipe_path.resolve()),
        "source": {
            "framework": recipe.source.framework,
            "path": str(recipe.source.path) if recipe.source.path else None,
            "entry_point": recipe.source.entry_point,
            "weights": str(recipe.source.weights) if recipe.source.weights else None,
        },
        "layout": layout,
        "quantization": recipe.quantization.model_dump(),
        "artifacts": artifacts,
        "runners": runners,
        "comparisons": comparisons,
        "findings": findings(comparisons) + legalization_findings(legalization) + edgetpu_findings(edgetpu),
        "latency": latency,
        "legalization": legalization,
        "edgetpu": edgetpu,
        "layers": layers,
        "worst_layers": worst_layers,
        "gates": gates,
        "tools": tool_versions(),
        "inputs": {"model_sha256": model_sha256, "recipe_sha256": recipe.sha256(), "datasets": datasets},
    }
