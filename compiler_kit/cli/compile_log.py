"""`ckit compile-log FILE`: what the Edge TPU compiler did, read from its .log or captured stdout, on any machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from compiler_kit.cli.errors import exits_cleanly

if TYPE_CHECKING:
    from compiler_kit.edgetpu.log_parser import CompilerOutput


@exits_cleanly
def compile_log(
    file: Annotated[
        Path, typer.Argument(help="NAME_edgetpu.log, or the compiler's captured stdout (or both in one file).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the parsed result as JSON instead.")] = False,
) -> None:
    """Read Edge TPU compiler output: the op table (operator, count, status, mapped), how many ops run on the
    Edge TPU and on the CPU, on-chip and off-chip parameter memory, and each failure with what to do about it.

    Exit codes: 0 parsed (also when the compilation itself failed: the report says so) · 2 the file is missing,
    unreadable, binary, or holds no compiler output.
    """
    from compiler_kit.edgetpu.log_parser import read_log

    result = read_log(file)
    typer.echo(json.dumps(result.as_dict(), indent=2) if as_json else render(result))


def render(result: CompilerOutput) -> str:
    from compiler_kit.edgetpu.log_parser import format_bytes

    verdict = {True: "compiled", False: "FAILED", None: "no verdict in the text"}[result.succeeded]
    if result.succeeded and result.partial:
        verdict += ", but not every op runs on the Edge TPU"
    lines = [f"Edge TPU compiler {result.compiler_version or '(version not shown)'}: {verdict}"]
    if result.input_model:
        lines.append(f"model: {result.input_model} -> {result.output_model or '?'}")
    if result.search_steps:
        lines.append(f"delegate search (-d) tried segments of: {', '.join(map(str, result.search_steps))} ops")
    if result.ops:
        lines += ["", *_table(result)]
    if result.total_ops is not None or result.edgetpu_subgraphs is not None:
        lines += ["", _counts(result)]
    if result.on_chip_bytes is not None or result.off_chip_bytes is not None:
        lines.append(
            f"parameters: on-chip {format_bytes(result.on_chip_bytes)} "
            f"(remaining {format_bytes(result.on_chip_remaining_bytes)}), "
            f"off-chip {format_bytes(result.off_chip_bytes)} (streamed on every inference)"
        )
    if result.compile_ms is not None:
        lines.append(f"compile time: {result.compile_ms} ms")
    for index, segment in enumerate(result.segments):
        lines.append(
            f"segment {index}: {segment.input_model or '?'}: {_counts(segment)}; on-chip "
            f"{format_bytes(segment.on_chip_bytes)}, off-chip {format_bytes(segment.off_chip_bytes)}"
        )
    lines += [f"warning: {warning}" for warning in result.warnings]
    for failure in result.failures:
        lines += ["", f"failure ({failure.kind}): {failure.message}", f"  advice: {failure.advice}"]
    return "\n".join(lines)


def _counts(result: CompilerOutput) -> str:
    def show(value: int | None) -> str:
        return "-" if value is None else str(value)

    return (
        f"Edge TPU subgraphs: {show(result.edgetpu_subgraphs)}  ops on Edge TPU: {show(result.ops_on_edgetpu)}  "
        f"on CPU: {show(result.ops_on_cpu)}  total: {show(result.total_ops)}"
    )


def _table(result: CompilerOutput) -> list[str]:
    rows = [("operator", "count", "status", "mapped")] + [
        (row.operator, str(row.count), row.status, "yes" if row.mapped else "no") for row in result.ops
    ]
    name, count, status = (max(len(row[i]) for row in rows) for i in range(3))
    return [f"{a:<{name}}  {b:>{count}}  {c:<{status}}  {d}" for a, b, c, d in rows]
