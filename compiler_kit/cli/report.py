"""`ckit report diff OLD NEW`: two builds' reports side by side, what got worse marked; Markdown for a pull request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from compiler_kit.cli.errors import exits_cleanly

report_app = typer.Typer(
    name="report",
    help="Work with build reports (report.json): compare a build against a baseline.",
    no_args_is_help=True,
)


@report_app.command("diff")
@exits_cleanly
def diff(
    old: Annotated[Path, typer.Argument(help="The baseline's report.json (or its build folder).")],
    new: Annotated[Path, typer.Argument(help="The new build's report.json (or its build folder).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON instead.")] = False,
    allow_other_model: Annotated[
        bool, typer.Option("--allow-other-model", help="Compare reports of differently named models.")
    ] = False,
) -> None:
    """Compare two reports: accuracy and drift per comparison pair, p50/p99 latency per runner, the Edge TPU
    mapping, the model sizes and the verdict. Only what both reports measured is compared; a change for the
    worse is marked ▼ (and listed under `worse` in --json).

    Exit codes: 0 compared (also when something got worse: gate on the JSON) · 2 a file is missing, not JSON,
    not a ckit report or of another schema version; the models differ; no runner or comparison in common.
    """
    from compiler_kit.report.diff import diff_reports, load_report

    result = diff_reports(load_report(old), load_report(new), allow_other_model=allow_other_model)
    typer.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.markdown(), nl=as_json)
