"""Renderings of the report document: a compact Markdown page for a pull request, and a terminal summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compiler_kit.report.tables import (
    Table,
    artifacts_table,
    budget_section,
    drift_table,
    edgetpu_latency_caption,
    edgetpu_latency_table,
    edgetpu_summary,
    edgetpu_table,
    gates_table,
    latency_table,
    legalization_table,
    outputs_table,
    tune_table,
    worst_layers_table,
)


def verdict(report: dict[str, Any]) -> str:
    return "PASSED" if report["passed"] else "FAILED"


def _markdown_table(table: Table) -> str:
    headers, rows = table
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(table: Table) -> str:
    headers, rows = table
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in [headers, *rows]
    )


def _overview(report: dict[str, Any]) -> str:
    q, data, source = report["quantization"], report["inputs"]["datasets"], report["source"]
    verify = data["verify"]
    return (
        f"{source['framework']} model `{source['path'] or source['entry_point']}` -> full-integer {q['mode']} "
        f"({q['input_type']} in, {q['output_type']} out, {q['granularity']}); "
        f"{data['calibration']['samples']} calibration samples; {verify['samples']} verification samples"
        f"{' with labels' if verify['labels'] else ' (no labels)'}"
        + "".join(
            f"; input `{name}` transposed {perm} for TFLite"
            for name, perm in report["layout"]["inputs"].items()
            if perm
        )
    )


def stages_line(report: dict[str, Any]) -> str:
    """Where the build's time went, and which stages the cache supplied ("" for a report without timings)."""
    seconds = report.get("stage_seconds") or {}
    cached = (report.get("cache") or {}).get("stages", {})
    reused = [stage for stage, found in cached.items() if found["status"] == "hit"]
    if not seconds:
        return ""
    timings = ", ".join(f"{stage} {value:.1f} s" for stage, value in seconds.items())
    return f"Stages: {timings}" + (f" (reused from the cache: {', '.join(reused)})" if reused else "")


def _markdown_edgetpu(report: dict[str, Any]) -> str:
    text = "## Edge TPU\n\n" + edgetpu_summary(report)
    failures = report["edgetpu"].get("failures") or []
    text += "".join(f"\n- {failure['message']}: {failure['advice']}" for failure in failures)
    if latency := report["edgetpu"].get("latency"):
        text += f"\n\n{edgetpu_latency_caption(latency)}\n\n{_markdown_table(edgetpu_latency_table(latency))}"
    table = edgetpu_table(report)
    return text + ("\n\n" + _markdown_table(table) if table[1] else "")


def _markdown_legalization(report: dict[str, Any]) -> list[str]:
    """The section when the build legalized the graph (old reports and Keras builds have none to show)."""
    section = report.get("legalization") or {}
    table = legalization_table(report)
    if not section.get("enabled") or not table[1]:
        return []
    return [
        "## Edge TPU legalization\n\nExact rewrites of the source graph before conversion (and the quantization "
        "remedies the recipe asks for), each checked with onnxruntime against the model as it came (`legalize` in "
        "the recipe).\n\n" + _markdown_table(table)
    ]


def _markdown_budget(report: dict[str, Any]) -> list[str]:
    if (section := budget_section(report)) is None:
        return []
    lines, table = section
    parts = [*lines, *([_markdown_table(table)] if table[1] else [])]
    return ["### Quantization error budget\n\n" + "\n\n".join(parts)]


def markdown(report: dict[str, Any]) -> str:
    gates = report["gates"]
    sections = [
        f"# ckit build `{report['name']}`: {verdict(report)}",
        _overview(report),
        "## Accuracy and drift (verification set)\n\n" + _markdown_table(drift_table(report)),
        *(
            ["### Outputs by task (source -> tflite-int8)\n\n" + _markdown_table(table)]
            if (table := outputs_table(report))[1]
            else []
        ),
        *(["\n".join(f"- {note}" for note in report["findings"])] if report["findings"] else []),
        *(
            ["### Layers that lose the most\n\n" + _markdown_table(worst_layers_table(report))]
            if report.get("layers")
            else []
        ),
        *_markdown_budget(report),
        "## Latency on this CPU (batch 1)\n\n" + _markdown_table(latency_table(report)),
        *_markdown_legalization(report),
        _markdown_edgetpu(report),
        "## Gates\n\n" + (_markdown_table(gates_table(report)) if gates else "No gates in the recipe."),
        "## Artifacts\n\n" + _markdown_table(artifacts_table(report)),
        "Full report with plots: [report.html](report.html)",
        *([line] if (line := stages_line(report)) else []),
        "<sub>" + " · ".join(f"{k} {v}" for k, v in report["tools"].items()) + "</sub>",
    ]
    return "\n\n".join(sections) + "\n"


def terminal_summary(report: dict[str, Any]) -> str:
    parts = [text_table(drift_table(report))]
    if (outputs := outputs_table(report))[1]:
        parts += ["", text_table(outputs)]
    parts += [f"note: {note}" for note in report["findings"]]
    parts += ["", text_table(latency_table(report)), "", edgetpu_summary(report)]
    if latency := report["edgetpu"].get("latency"):
        parts += [edgetpu_latency_caption(latency), text_table(edgetpu_latency_table(latency))]
    if report["gates"]:
        parts += ["", text_table(gates_table(report))]
    parts += [*(["", line] if (line := stages_line(report)) else []), f"\n{verdict(report)}: {report['name']}"]
    return "\n".join(parts)


def tune_markdown(tune: dict[str, Any]) -> str:
    chosen = f"Chosen: **{tune['best']}**." if tune["best"] else "No trial built."
    return f"# ckit tune `{Path(tune['recipe']).name}`\n\n{chosen}\n\n{_markdown_table(tune_table(tune))}\n"
