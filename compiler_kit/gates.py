"""Gates: the recipe's limits, checked against the report's numbers. A failed gate makes `ckit build` exit 3.

A gate is named `max_<name>` or `min_<name>` after what it judges: a registered metric (compare/metrics.py) of the
comparison source -> tflite-int8 (and of source -> each device runner, as `<gate>[device:NAME]`: the model that ships
is the one the device runs), or an Edge TPU figure (`ops_on_edgetpu_fraction`, `off_chip_bytes`);
`max_latency_p50_ms` judges each named runner's median latency, `max_predicted_edgetpu_ms` each named target's
predicted Edge TPU latency (edgetpu/latency.py: a prediction, for models nobody has run on the device yet).
`outputs` gates judge one output's metrics (its task's and the signal metrics), named `outputs[<name>].<gate>`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from compiler_kit.recipe import Gates

DRIFT_REFERENCE, DRIFT_CANDIDATE = "source", "tflite-int8"


def drift_comparison(comparisons: list[dict[str, Any]]) -> dict[str, Any]:
    """The source -> tflite-int8 comparison among a report's, the one the gates judge ({} when there is none: a
    schema 1 report)."""
    pair = (DRIFT_REFERENCE, DRIFT_CANDIDATE)
    return next((c for c in comparisons if (c["reference"], c["candidate"]) == pair), {})


@dataclass(frozen=True)
class GateResult:
    name: str
    threshold: float
    value: float | None
    passed: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _judge(name: str, bound: str, threshold: float, value: float | None) -> GateResult:
    passed = value is not None and (value <= threshold if bound == "max" else value >= threshold)
    return GateResult(name, threshold, value, passed)


def evaluate(
    gates: Gates,
    measured: dict[str, float | None],
    latency_p50_ms: dict[str, float],
    baseline: dict[str, float | None] | None = None,
    predicted_edgetpu_ms: dict[str, float] | None = None,
    per_output: dict[str, dict[str, float | None]] | None = None,
    devices: dict[str, dict[str, float | None]] | None = None,
) -> list[GateResult]:
    """`measured`: the metrics of source -> tflite-int8 and the Edge TPU figures (ops_on_edgetpu_fraction,
    off_chip_bytes); `latency_p50_ms`: median latency by runner; `baseline`: report.diff.baseline_values();
    `predicted_edgetpu_ms`: predicted Edge TPU latency by target (none when the Edge TPU stage is off);
    `per_output`: each output's metrics of source -> tflite-int8; `devices`: the metrics of source -> each device
    runner, judged by the same drift gates."""
    measured = {**measured, **_relative_to(baseline or {}, measured)}
    keyed = {"max_latency_p50_ms": latency_p50_ms, "max_predicted_edgetpu_ms": predicted_edgetpu_ms or {}}
    results = []
    for field, threshold in gates.model_dump(
        exclude={*keyed, "max_latency_p50_above_baseline_pct", "baseline", "outputs"}
    ).items():
        if threshold is not None:
            bound, metric = field.split("_", 1)
            results.append(_judge(field, bound, threshold, measured.get(metric)))
            results += [
                _judge(f"{field}[{runner}]", bound, threshold, metrics[metric])
                for runner, metrics in (devices or {}).items()
                if metric in metrics
            ]
    for field, values in keyed.items():
        for key, threshold in getattr(gates, field).items():
            results.append(_judge(f"{field}[{key}]", "max", threshold, values.get(key)))
    for runner, threshold in gates.max_latency_p50_above_baseline_pct.items():
        before, now = (baseline or {}).get(f"latency_p50_ms[{runner}]"), latency_p50_ms.get(runner)
        increase = 100 * (now / before - 1) if before and now is not None else None
        results.append(_judge(f"max_latency_p50_above_baseline_pct[{runner}]", "max", threshold, increase))
    for output, thresholds in gates.outputs.items():
        metrics = (per_output or {}).get(output, {})
        for gate, threshold in thresholds.items():
            bound, metric = gate.split("_", 1)
            results.append(_judge(f"outputs[{output}].{gate}", bound, threshold, metrics.get(metric)))
    return results


def _relative_to(baseline: dict[str, float | None], measured: dict[str, float | None]) -> dict[str, float | None]:
    before, now = baseline.get("accuracy"), measured.get("accuracy_candidate")
    return {"accuracy_below_baseline_pp": 100 * (before - now) if before is not None and now is not None else None}


def needs_labels(gates: Gates) -> list[str]:
    """Gates that judge accuracy, which cannot be measured without labels."""
    return [field for field, value in gates.model_dump().items() if "accuracy" in field and value is not None]
