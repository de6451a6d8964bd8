"""The report document: versioned JSON, a public interface that CI scripts parse. Renderings derive from it.

Required keys (never renamed): schema_version, passed, artifacts{name: {path, sha256, bytes}}, comparisons[{reference,
candidate, metrics}], latency{runner: {first_ms, p50_ms, p90_ms, p99_ms, mean_ms, std_ms, runs, threads}},
gates[{name, threshold, value, passed}], tools{...}, inputs{model_sha256, recipe_sha256, datasets}.
Added in schema 1 (old readers unaffected): legalization{enabled, applied, max_relative_error, rewrites[{name,
summary, status, count, nodes, max_relative_error}], renamed{new name: original name}}.

Schema 2 (every schema 1 key kept, with its meaning):
- comparisons[].outputs{output name: {task, metrics{signal and task metrics}, per_sample{metric, higher_is_better,
  percentiles{p0, p1, p5, p50, p95, p100}, worst[{index, sample, value}]}}}: every output, matched by name.
  comparisons[].metrics stays the aggregate: cosine, snr_db, max_abs_error and rmse are the worst over outputs;
  top1_agreement and accuracy_* belong to the labelled (or first) classification output, None without one.
- tasks{output name: {task, inferred, labels}}: what each output was judged as.
- layout.outputs is keyed by output name (schema 1: a list in output order).
- warnings[]: the findings also printed on stderr (the build ran, but a result must not be trusted blindly).
- gates[] may hold `outputs[<name>].<gate>` rows (recipe gates.outputs).
- diagnoses[]: why the int8 model is worse than it should be (compiler_kit.compare.diagnoses), also in findings.
- layers[].clipped: the share of float values beyond the int8 tensor's range (calibration saw narrower ones).
- layers[].source_name: the source model's layer each activation is (an ONNX node, a torch module path with its
  ONNX op, a Keras layer), matched by value; None where none holds the same values.
- quantization_budget{reference, outputs{output name: {input_db, weights_db, activations_db, combined_db, int8_db,
  dominant}}, worst_output, dominant, remedy, weights_replaced, activations_quantized, activations_unmatched}, or
  {error} when the budget could not be made (compiler_kit.compare.budget).
- legalization.rewrites[].exact: False for a remedy that moves the float model on purpose (bias correction);
  legalization.ignored[]: a Keras build's remedies that the recipe asked for and that do not apply to it.
- calibration_curve{reference, verify_samples, available, points[{samples, snr_db{output name: dB}}],
  seconds{quantize, run}}: the int8 model's SNR against float by calibration samples (n/4, n/2 and the build's n;
  compare/calibration_curve.py), or {skipped} when the build calibrates on too many samples to quantize again
  cheaply, or {error}.
"""

from __future__ import annotations

import datetime
import platform
from pathlib import Path
from typing import Any

from compiler_kit import __version__, lazy
from compiler_kit.recipe import Recipe

SCHEMA_VERSION = 2
# Conversion (no quantization) should not change outputs: below this cosine AND this SNR the converter broke
# something. Both, because either alone misleads: cosine on near-blank maps is noise, SNR on a tiny output too.
CONVERSION_MIN_COSINE = 0.9999
CONVERSION_MIN_SNR_DB = 60.0
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
    tools: dict[str, str | None] = {"ckit": __version__, "python": platform.python_version()}
    tools.update({name: version for name in TOOL_DISTRIBUTIONS if (version := lazy.version(name))})
    return tools


def findings(comparisons: list[dict[str, Any]], legalization: dict[str, Any] | None = None) -> list[str]:
    """Plain statements about the drift, so the report says which step, and which output, lost accuracy.
    `legalization`: the report's section, whose remedies may have moved the float model on purpose."""
    moved = remedies_that_move(legalization or {})
    notes = []
    for comparison in comparisons:
        step, metrics = f"{comparison['reference']} -> {comparison['candidate']}", comparison["metrics"]
        if comparison["candidate"] in CONVERSION_STEPS:
            # The float TFLite model is the legalized graph; the `onnx` runner runs the export as it came.
            on_purpose = moved if comparison["candidate"] == "tflite-float" else []
            notes += _conversion_findings(step, comparison.get("outputs") or {"": {"metrics": metrics}}, on_purpose)
        if metrics["accuracy_drop_pp"] is not None and metrics["accuracy_drop_pp"] > 0:
            notes.append(f"{step} loses {metrics['accuracy_drop_pp']:.2f} accuracy points")
    return notes


# A device's runtime against LiteRT here on one file: int8 kernels round differently (the digits CNN: 47.6 dB
# between tflite-runtime 2.14 and LiteRT 2.1), but below this the device computes something else.
DEVICE_SNR_DB = 20.0


def remedies_that_move(legalization: dict[str, Any]) -> list[str]:
    """The applied rewrites that are not exact (bias correction): they change the float model on purpose."""
    rows = legalization.get("rewrites", [])
    return [row["name"] for row in rows if row["status"] == "applied" and not row.get("exact", True)]


def _conversion_findings(step: str, outputs: dict[str, dict[str, Any]], on_purpose: list[str]) -> list[str]:
    notes = []
    for name, entry in outputs.items():
        cosine, snr = entry["metrics"]["cosine"], entry["metrics"]["snr_db"]
        if cosine < CONVERSION_MIN_COSINE and snr < CONVERSION_MIN_SNR_DB:
            which = f" output '{name}'" if len(outputs) > 1 else ""
            measured = f"cosine {cosine:.6f} < {CONVERSION_MIN_COSINE}, SNR {snr:.1f} dB < {CONVERSION_MIN_SNR_DB:.0f}"
            notes.append(
                f"conversion {step}{which} is not lossless ({measured}), as intended: the legalization remedy "
                f"{', '.join(on_purpose)} moved the float model's biases to cancel the int8 weights' mean error; "
                "judge source -> tflite-int8"
                if on_purpose
                else f"conversion {step}{which} is NOT lossless ({measured}): the converter changed the model (layout "
                "or an op); look there before blaming quantization"
            )
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
    undone = [
        f"legalization rewrite {row['name']} was undone ({row['status'].removeprefix('reverted: ')}); the model "
        "was converted without it: please report the model"
        for row in section.get("rewrites", [])
        if row["status"].startswith("reverted")
    ]
    ignored = [  # remedies a Keras build cannot apply (it has no ONNX graph)
        f"{field} does not apply to this model ({section.get('reason', 'not legalized')}): it was converted without it"
        for field in section.get("ignored", [])
    ]
    return undone + ignored


def degenerate_findings(constant: list[str], samples: int) -> list[str]:
    return [
        f"output '{name}' of the source model is the same for all {samples} verification samples: a degenerate model "
        "(untrained, collapsed, or not reading its input) or data that does not vary; its drift metrics say nothing"
        for name in constant
    ]


def sample_count_findings(requested: dict[str, int | None], available: dict[str, int]) -> list[str]:
    """`requested`: num_samples the recipe set explicitly, by section; `available`: the samples its data has."""
    return [
        f"{section}.num_samples is {count} but the data has {available[section]} samples: all {available[section]} "
        "are used"
        for section, count in requested.items()
        if count is not None and count > available[section]
    ]


# int8 slower than float on this CPU by more than this factor AND this many milliseconds is worth explaining: below
# either, it is timing noise (a model of a few microseconds varies by more than 20%).
INT8_SLOWER_FACTOR, INT8_SLOWER_MS = 1.2, 0.05


def speed_findings(latency: dict[str, Any], outside_xnnpack: dict[str, dict[str, int]]) -> list[str]:
    """int8 slower than float here: usually XNNPACK, LiteRT's fast CPU kernels, left int8 ops to slower ones."""
    float_ms, int8_ms = (latency.get(name, {}).get("p50_ms") for name in ("tflite-float", "tflite-int8"))
    if not float_ms or not int8_ms or int8_ms <= max(INT8_SLOWER_FACTOR * float_ms, float_ms + INT8_SLOWER_MS):
        return []
    slower = f"int8 is {int8_ms / float_ms:.1f}x slower than float on this CPU (p50 {int8_ms:.3f} vs {float_ms:.3f} ms)"
    left = outside_xnnpack.get("tflite-int8") or {}
    if not left:
        return [f"{slower}, although XNNPACK runs every int8 op: look at the threads and the machine's load"]
    ops = ", ".join(f"{count} x {op}" for op, count in left.items())
    float_ops = ", ".join(f"{count} x {op}" for op, count in (outside_xnnpack.get("tflite-float") or {}).items())
    return [
        f"{slower}: XNNPACK, LiteRT's fast CPU kernels, leaves these int8 ops to slower ones: {ops} (float model: "
        f"{float_ops or 'none'}). On a device these kernels run only the ops the Edge TPU leaves to its CPU"
    ]


def device_findings(comparisons: list[dict[str, Any]], runners: dict[str, dict[str, Any]]) -> list[str]:
    """A device that computes the same int8 file differently from LiteRT here: its runtime, not the model, is at
    fault (seen here: tflite-runtime 2.7.0 applies one scale to FULLY_CONNECTED weights quantized per channel, so
    the digits CNN scores 9.7% there and 97.5% here; per-tensor weights run bit-exact on it)."""
    findings = []
    for comparison in comparisons:
        device = comparison["candidate"]
        snr = comparison["metrics"].get("snr_db")
        if comparison["reference"] != "tflite-int8" or snr is None or snr >= DEVICE_SNR_DB:
            continue
        runtime = runners.get(device, {})
        findings.append(
            f"{device} runs the same int8 file differently from tflite-int8 here (SNR {snr:.1f} dB between them): "
            f"its runtime ({runtime.get('runtime')} {runtime.get('version')}) computes some op otherwise. Update "
            "the device's runtime, or try quantization.granularity: per-tensor (older runtimes ignore per-channel "
            "FULLY_CONNECTED weights)"
        )
    return findings


def explanation_findings(budget: dict[str, Any], curve: dict[str, Any]) -> list[str]:
    """The error budget and the calibration curve explain a result and never stop a build: one that could not be
    made says so."""
    made = {"the quantization error budget": budget, "the calibration curve": curve}
    return [
        f"{what} could not be made ({section['error']}): please report the model"
        for what, section in made.items()
        if "error" in section
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
    tasks: dict[str, Any],
    warnings: list[str],
    confusion: dict[str, Any] | None,
    quantization_budget: dict[str, Any],
    calibration_curve: dict[str, Any],
    diagnoses: list[str],
    stage_seconds: dict[str, float],
    cache: dict[str, Any],
) -> dict[str, Any]:
    """The report document, built once from the stages' results. `warnings`: what the build found that must not
    pass unnoticed (also findings, and printed on stderr); `confusion`: a classifier's predictions, float against
    int8 (None for other models); `cache`: the cache folder and each stage's verdict."""
    warnings = warnings + edgetpu_findings(edgetpu)
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
        "tasks": tasks,
        "comparisons": comparisons,
        "findings": findings(comparisons, legalization) + legalization_findings(legalization) + diagnoses + warnings,
        "diagnoses": diagnoses,
        "warnings": warnings,
        "latency": latency,
        "legalization": legalization,
        "edgetpu": edgetpu,
        "layers": layers,
        "worst_layers": worst_layers,
        "quantization_budget": quantization_budget,
        "calibration_curve": calibration_curve,
        "gates": gates,
        "tools": tool_versions(),
        "inputs": {"model_sha256": model_sha256, "recipe_sha256": recipe.sha256(), "datasets": datasets},
        **({"confusion": confusion} if confusion is not None else {}),
        "stage_seconds": stage_seconds,
        "cache": cache,
    }
