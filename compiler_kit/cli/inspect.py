"""`ckit inspect MODEL.tflite`: every op with its predicted Edge TPU status, then the predicted verdict.

Static analysis only (compiler_kit/edgetpu/analysis.py): no TensorFlow, no compiler, so it runs in a blink.
The function is `inspect_model`: a function named `inspect` would shadow the stdlib module in this file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from compiler_kit.cli.errors import exits_cleanly

if TYPE_CHECKING:
    from compiler_kit.edgetpu.analysis import EdgeTpuPrediction

PREDICTED = "PREDICTED (static analysis; the Edge TPU compiler is not run)"


@exits_cleanly
def inspect_model(
    model: Annotated[Path, typer.Argument(help="A .tflite model, e.g. build/digits_keras/model_int8.tflite.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the prediction as JSON.")] = False,
) -> None:
    """Predict what the Edge TPU compiler will do with a TFLite model: each op's status in the compiler's words,
    ops on the Edge TPU and the CPU, parameter memory on-chip and off-chip, multiply-accumulates, the predicted
    latency on a USB Accelerator, a Dev Board and a PCIe card (cost model; the CPU part estimated for each target's
    host CPU, and timed here apart) beside the ideal floor at 4 TOPS, and what to fix.
    Exit codes: 0 analyzed · 2 not a readable TFLite model.
    """
    from compiler_kit.edgetpu.analysis import analyze
    from compiler_kit.edgetpu.latency import latency_section

    prediction = analyze(model)
    latency = latency_section(prediction) if prediction.ops_on_edgetpu else None
    if as_json:
        typer.echo(json.dumps({**prediction.as_dict(), "latency": latency}, indent=2))
    else:
        typer.echo(render(prediction, latency))


def render(prediction: EdgeTpuPrediction, latency: dict[str, Any] | None = None) -> str:
    """The op table, the compiler-style summary, the predicted latency and the failures with their advice."""
    from compiler_kit.edgetpu.hardware import ON_CHIP_CACHE_BYTES
    from compiler_kit.report.render import text_table
    from compiler_kit.report.tables import edgetpu_latency_caption, edgetpu_latency_table

    signatures = [
        " ".join(t.describe() for t in op.inputs if t is not None) + " -> " + " ".join(t.describe() for t in op.outputs)
        for op in prediction.per_op
    ]
    width = max(map(len, signatures), default=0)
    lines = [str(prediction.path), "", f"{'#':>4}  {'operator':<24} {'v':>2}  {'inputs -> outputs':<{width}}  status"]
    for op, signature in zip(prediction.per_op, signatures, strict=True):
        lines.append(f"{op.index:>4}  {op.operator:<24} {op.version:>2}  {signature:<{width}}  {op.status}")
        if op.reason:
            lines.append(f"{'':>35}reason: {op.reason}")
    lines += ["", PREDICTED, ""]
    lines += [f"{row['operator']:<31}{row['count']:<11}{row['status']}" for row in prediction.op_counts()]
    lines += [
        "",
        f"Ops on the Edge TPU: {prediction.ops_on_edgetpu}   on the CPU: {prediction.ops_on_cpu}   "
        f"Edge TPU subgraphs: {prediction.edgetpu_subgraphs}",
        f"Parameters: {_size(prediction.parameter_bytes)}; on-chip {_size(prediction.on_chip_bytes)}, "
        f"off-chip {_size(prediction.off_chip_bytes)} (usable cache {_size(ON_CHIP_CACHE_BYTES)})",
        f"Multiply-accumulates: {prediction.macs:,}   ideal latency floor at 4 TOPS: "
        f"{prediction.ideal_latency_ms:.6f} ms",
    ]
    if latency is not None:
        lines += ["", edgetpu_latency_caption(latency), text_table(edgetpu_latency_table(latency))]
    for failure in prediction.failures:
        lines += [f"failure ({failure.kind}): {failure.message}", f"  advice: {failure.advice}"]
    return "\n".join(lines)


def _size(count: int) -> str:
    """Sizes as the compiler writes them: 6.00MiB, 41.75KiB, 0.00B."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.2f}{unit}"
    return f"{count:.2f}B"
