"""The report's tables as rows of text, shared by the Markdown page and the terminal summary."""

from __future__ import annotations

from typing import Any

from compiler_kit.gates import drift_comparison

Table = tuple[list[str], list[list[str]]]


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ms(value: float) -> str:
    return f"{value:.4g}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def drift_table(report: dict[str, Any]) -> Table:
    headers = [
        "reference -> candidate",
        "acc ref",
        "acc cand",
        "drop pp",
        "top-1 agree",
        "cosine",
        "SNR dB",
        "max abs err",
    ]
    rows = []
    for comparison in report["comparisons"]:
        m = comparison["metrics"]
        rows.append(
            [
                f"{comparison['reference']} -> {comparison['candidate']}",
                _pct(m["accuracy_reference"]),
                _pct(m["accuracy_candidate"]),
                _num(m["accuracy_drop_pp"], 2),
                _pct(m["top1_agreement"]),
                _num(m["cosine"], 6),
                _num(m["snr_db"], 1),
                _num(m["max_abs_error"], 4),
            ]
        )
    return headers, rows


# The signal metrics every output has; an output's row shows its task's metrics beside them.
_SIGNAL = ("cosine", "snr_db", "max_abs_error", "rmse")


def drift_outputs(report: dict[str, Any]) -> dict[str, Any]:
    """Per output, the source -> tflite-int8 comparison (a schema 1 report has none)."""
    return drift_comparison(report.get("comparisons") or []).get("outputs") or {}


def outputs_table(report: dict[str, Any]) -> Table:
    """Each output judged by its task (source -> tflite-int8), with the spread over samples and the worst ones."""
    headers = ["output", "task", "task metrics", "SNR dB", "per sample", "p5", "p50", "worst samples"]
    tasks = report.get("tasks") or {}
    rows = []
    for name, entry in drift_outputs(report).items():
        metrics, spread = entry["metrics"], entry["per_sample"]
        shown = ", ".join(
            f"{key} {_g(value)}" for key, value in metrics.items() if key not in _SIGNAL and value is not None
        )
        inferred = " (inferred)" if tasks.get(name, {}).get("inferred") else ""
        p5, p50 = (_g(spread["percentiles"][key]) for key in ("p5", "p50"))
        row = [name, entry["task"] + inferred, shown, _num(metrics["snr_db"], 1), spread["metric"]]
        rows.append([*row, p5, p50, _worst(spread)])
    return headers, rows


def _worst(spread: dict[str, Any], shown: int = 3) -> str:
    """The worst samples that are worse than the best one (a set where every sample agrees has none to name)."""
    best = spread["percentiles"]["p100" if spread["higher_is_better"] else "p0"]
    worse = [w for w in spread["worst"][:shown] if w["value"] is None or w["value"] != best]
    return ", ".join(f"{w['sample'] or w['index']}: {_g(w['value'])}" for w in worse) or "-"


def _g(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def latency_table(report: dict[str, Any]) -> Table:
    headers = [
        "runner",
        "runtime",
        "threads",
        "first ms",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "mean ms",
        "std ms",
        "runs",
    ]
    rows = []
    for name, stats in report["latency"].items():
        runtime = report["runners"][name]
        rows.append(
            [name, f"{runtime['runtime']} {runtime['version']}", str(stats["threads"])]
            + [_ms(stats[key]) for key in ("first_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms")]
            + [str(stats["runs"])]
        )
    return headers, rows


def gates_table(report: dict[str, Any]) -> Table:
    rows = [
        [gate["name"], _num(gate["threshold"]), _num(gate["value"]), "pass" if gate["passed"] else "FAIL"]
        for gate in report["gates"]
    ]
    return ["gate", "threshold", "value", "result"], rows


def artifacts_table(report: dict[str, Any]) -> Table:
    rows = [
        [name, f"{entry['bytes']:,}", entry["sha256"][:12], entry["path"]]
        for name, entry in report["artifacts"].items()
    ]
    return ["artifact", "bytes", "sha256", "path"], rows


def edgetpu_table(report: dict[str, Any]) -> Table:
    rows = [
        [op["operator"], str(op["count"]), op["status"], "yes" if op["mapped"] else "no"]
        for op in report["edgetpu"].get("ops", [])
    ]
    return ["operator", "count", "status", "on Edge TPU"], rows


def _num_e(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1e}"


def legalization_table(report: dict[str, Any]) -> Table:
    """The Edge TPU rewrites of the source graph: how often each ran, where, and its float cost."""
    rows = [
        [row["name"], str(row["count"]), _status(row), _num_e(row["max_relative_error"]), ", ".join(row["nodes"])]
        for row in (report.get("legalization") or {}).get("rewrites", [])
    ]
    return ["rewrite", "count", "status", "max relative error", "nodes (first 10)"], rows


def _status(row: dict[str, Any]) -> str:
    """A remedy that moves the float model on purpose says so: its error is the intended change, not a fault."""
    return row["status"] + ("" if row.get("exact", True) else " (a remedy, not exact: moves the float outputs)")


def _bytes(value: int | None) -> str:
    if value is None:
        return "n/a"
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:.2f} {unit}"
    return f"{value} B"


def edgetpu_summary(report: dict[str, Any]) -> str:
    """One sentence: who decided (the compiler, or a prediction), what maps, and the parameter memory."""
    section = report["edgetpu"]
    if section.get("mode") == "off":
        return "Edge TPU stage off (edgetpu.compile: off)."
    if section["predicted"]:
        source = "PREDICTED by static analysis (edgetpu_compiler not run)"
    else:
        source = f"compiled by edgetpu_compiler {section['compiler']['version']}"
    on_tpu, on_cpu = section.get("ops_on_edgetpu"), section.get("ops_on_cpu")
    text = (
        f"Edge TPU, {source}: {on_tpu} ops on the Edge TPU, {on_cpu} on the CPU, "
        f"{section.get('edgetpu_subgraphs')} Edge TPU subgraph(s); parameters "
        f"on-chip {_bytes(section.get('on_chip_bytes'))}, off-chip {_bytes(section.get('off_chip_bytes'))}"
    )
    if section.get("ideal_latency_ms") is not None:
        text += f"; ideal latency floor at 4 TOPS {section['ideal_latency_ms']:.3g} ms"
    if section.get("problem"):
        text += f". Problem: {section['problem']}"
    if runtime := section.get("runtime"):
        text += f". Runtime: {runtime['reason']}"
    return text + "."


def edgetpu_latency_table(latency: dict[str, Any]) -> Table:
    """The predicted Edge TPU latency per target and its parts (`edgetpu.latency` of a report, or inspect's)."""
    headers = ["target (PREDICTED)", "total ms", "overhead", "TPU compute", "parameter stream", "I/O", "host CPU part"]
    rows = [
        [target, *(_num(estimate[key], 3) for key in _LATENCY_PARTS)]
        for target, estimate in latency.get("targets", {}).items()
    ]
    return headers, rows


_LATENCY_PARTS = ("predicted_ms", "overhead_ms", "tpu_compute_ms", "parameter_stream_ms", "io_ms", "cpu_ms")


def _errors_text(errors: dict[str, dict[str, float]]) -> str:
    return "; ".join(
        f"{t} median {e['median']:.0f}%, worst {e['worst']:.0f}% ({e['rows']:.0f} rows)" for t, e in errors.items()
    )


def edgetpu_latency_caption(latency: dict[str, Any]) -> str:
    """What the prediction is and how far to trust it: the cost model's leave-one-model-out error on Coral's published
    figures and its error on the published figures of models no fit saw, per target; then the CPU part as timed on
    THIS machine, which is not in the prediction."""
    errors, held = latency.get("loo_errors_pct") or {}, latency.get("held_out_errors_pct") or {}
    trust = (
        f"leave-one-model-out |error| on Coral's published figures: {_errors_text(errors)}"
        if errors
        else "not yet fitted on published measurements"
    )
    if held:
        trust += f"; on published figures of models no fit saw: {_errors_text(held)}"
    text = (
        f"Edge TPU latency PREDICTED by ckit's cost model (no device; {trust}); ideal floor, every MAC at 4 TOPS: "
        f"{latency['ideal_floor_ms']:.3g} ms. The CPU part is estimated for each target's host CPU."
    )
    if here := latency.get("cpu_part_here"):
        timed = f"{here['ms']:.3g} ms" if here.get("ms") is not None else f"not timed ({here.get('error')})"
        text += f" The same ops timed on this machine with LiteRT (not in the prediction): {timed}."
    if unmeasured := latency.get("cpu_unmeasured_ops"):
        why = "no kernel here: custom or unknown ops, or inputs of a type the kernel cannot read"
        text += f" Not in that timing ({why}): {', '.join(unmeasured)}."
    if latency.get("measured_p50_ms") is not None:
        text += f" Measured on an Edge TPU: p50 {latency['measured_p50_ms']:.3g} ms."
    return text


def worst_layers_table(report: dict[str, Any]) -> Table:
    by_name = {layer["name"]: layer for layer in report.get("layers", [])}
    rows = [
        [by_name[name].get("source_name") or "-", name, by_name[name]["op"], _num(by_name[name]["snr_db"], 1),
         _num(by_name[name]["added_db"], 1), _num(by_name[name]["error_steps"], 2)]
        for name in report.get("worst_layers", [])
    ]  # fmt: skip
    headers = ["source model layer", "TFLite tensor (float vs int8)", "op", "SNR dB", "added dB", "error in steps"]
    return headers, rows


def budget_table(report: dict[str, Any]) -> Table:
    """The quantization error budget per output: each part's SNR alone, what they combine to, the int8 model's."""
    budget = report.get("quantization_budget") or {}
    rows = [
        [name, *(_num(entry[f"{term}_db"], 1) for term in ("input", "weights", "activations", "combined", "int8")),
         entry["dominant"]]
        for name, entry in (budget.get("outputs") or {}).items()
    ]  # fmt: skip
    header = ["output", "input only dB", "weights only dB", "activations only dB", "combined dB", "int8 dB"]
    return [*header, "dominant"], rows


def budget_caption(report: dict[str, Any]) -> str:
    """What the budget says, in one paragraph: its dominant term and remedy, or why there is none."""
    budget = report.get("quantization_budget") or {}
    if "error" in budget:
        return f"No error budget: {budget['error']}."
    if not budget.get("outputs"):
        return ""
    return (
        f"SNR against {budget['reference']} with one part of the int8 quantization at a time; independent errors "
        f"combine in power. Dominant: {budget['dominant']} (output '{budget['worst_output']}'): {budget['remedy']}."
    )


def curve_line(report: dict[str, Any]) -> str:
    """The calibration curve in one sentence: each output's int8 SNR by calibration samples, or why there is none."""
    curve = report.get("calibration_curve") or {}
    if reason := curve.get("error") or curve.get("skipped"):
        return f"No calibration curve: {reason}."
    points = _curve_points(report)
    if not points:
        return ""
    counts = " / ".join(str(point["samples"]) for point in points)
    snrs = "; ".join(
        " / ".join(_num(point["snr_db"][name], 1) for point in points) + f" dB ('{name}')"
        for name in points[-1]["snr_db"]
    )
    samples, available = points[-1]["samples"], curve["available"]
    more = f" (the data has {available})" if available > samples else ""
    return (
        f"Calibration size: the int8 model calibrated on {counts} of the {samples} calibration samples{more}, SNR "
        f"against {curve['reference']} on {curve['verify_samples']} verification samples: {snrs}."
    )


def _curve_points(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The calibration curve's points; none for one point alone (a single calibration sample is no curve)."""
    points: list[dict[str, Any]] = (report.get("calibration_curve") or {}).get("points") or []
    return points if len(points) > 1 else []


def budget_section(report: dict[str, Any]) -> tuple[list[str], Table] | None:
    """The budget section's sentences (the budget's caption, the calibration curve) and its table; None when there
    is neither a budget nor a curve to show (one that could not be made is a finding already)."""
    table = budget_table(report)
    if not table[1] and not _curve_points(report):
        return None
    return [line for line in (budget_caption(report), curve_line(report)) if line], table


def tune_table(tune: dict[str, Any]) -> Table:
    """One row per `ckit tune` trial: its settings, verdict and int8 result, the chosen one marked."""
    rows = [
        [("* " if trial["name"] == tune["best"] else "") + trial["name"],
         ", ".join(f"{k}={v}" for k, v in trial["settings"].items()) or "-",
         "passed" if trial["passed"] else f"exit {trial['exit_code']}",
         f"{trial['metric']} {_num(trial['score'], 4)}" if trial["metric"] else "-", _num(trial["snr_db"], 1),
         f"{trial['seconds']:.1f}"]
        for trial in tune["trials"]
    ]  # fmt: skip
    return ["trial (* chosen)", "settings", "gates", "int8 result", "int8 SNR dB", "seconds"], rows
