"""`ckit build RECIPE`: float model -> int8 TFLite, drift and latency report, gates. The exit code is the verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compiler_kit.cli.errors import exits_cleanly
from compiler_kit.errors import EXIT_GATE_FAILED


@exits_cleanly
def build(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file, e.g. recipes/digits_keras.yaml.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Build folder (overrides the recipe's output.dir).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines, only the summary.")] = False,
    compiler: Annotated[
        Path | None,
        typer.Option("--compiler", help="edgetpu_compiler to use (overrides edgetpu.compiler and the search)."),
    ] = None,
) -> None:
    """Build a recipe: convert, quantize to full-integer int8, verify every stage on the same samples,
    time each runner, write BUILD/report.json, BUILD/report.md and
    BUILD/report.html, and check the gates.

    Exit codes: 0 gates passed · 1 internal error · 2 bad recipe, model or data · 3 a gate failed (the report
    is still written) · 4 a required tool is missing.
    """
    from compiler_kit.pipeline import build as run_build
    from compiler_kit.recipe import load_recipe
    from compiler_kit.report import REPORT_HTML, REPORT_JSON, REPORT_MD, terminal_summary

    loaded = load_recipe(recipe)
    if compiler is not None:
        edgetpu = loaded.edgetpu.model_copy(update={"compiler": compiler.resolve()})
        loaded = loaded.model_copy(update={"edgetpu": edgetpu})
    result = run_build(loaded, recipe, out, progress=(lambda _: None) if quiet else _progress)
    typer.echo(terminal_summary(result.report))
    typer.echo(
        f"report: {result.build_dir / REPORT_JSON}  {result.build_dir / REPORT_MD}  {result.build_dir / REPORT_HTML}"
    )
    if not result.passed:
        for gate in result.failed_gates:
            typer.echo(
                f"gate failed: {gate['name']}: value {gate['value']} vs threshold {gate['threshold']}",
                err=True,
            )
        raise typer.Exit(EXIT_GATE_FAILED)


def _progress(message: str) -> None:
    typer.echo(message, err=True)
