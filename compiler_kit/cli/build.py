"""`ckit build RECIPE...`: float model -> int8 TFLite, drift and latency report, gates. The exit code is the verdict."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from compiler_kit.cli.errors import INTERRUPTS, exits_cleanly
from compiler_kit.cli.options import AcceptNewHostKey, CacheDir, DeviceUrls, RayAddress
from compiler_kit.errors import EXIT_BAD_INPUT, EXIT_GATE_FAILED, EXIT_INTERRUPTED


@exits_cleanly
def build(
    recipes: Annotated[
        list[Path], typer.Argument(help="Recipe YAML files, e.g. recipes/digits_keras.yaml or recipes/*.yaml.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Build folder (overrides the recipe's output.dir; one recipe).")
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Build this many recipes at once.")] = 1,
    force: Annotated[bool, typer.Option("--force", help="Run every stage again, replacing its cache entry.")] = False,
    cache_dir: CacheDir = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines, only the summary.")] = False,
    compiler: Annotated[
        Path | None,
        typer.Option("--compiler", help="edgetpu_compiler to use (overrides edgetpu.compiler and the search)."),
    ] = None,
    assignments: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Set a recipe field over the file's value (repeatable; VALUE is YAML), e.g. --set "
            "calibration.method=percentile --set verify.num_samples=100.",
        ),
    ] = None,
    ray: RayAddress = None,
    devices: DeviceUrls = None,
    accept_new_host_key: AcceptNewHostKey = False,
) -> None:
    """Build recipes: convert, quantize to full-integer int8, verify every stage on the same samples,
    time each runner, write BUILD/report.json, BUILD/report.md and BUILD/report.html, and check the gates.

    Every stage is cached by a hash of everything it depends on: a rebuild with nothing changed reuses each
    stage, a change re-runs only the stages downstream of it. Two builds of one folder take turns.

    With --device ssh://user@host (or verify.devices in the recipe) the int8 model also runs on that device,
    as runner device:NAME, with its drift from tflite-int8 and its own latency in the report.

    Exit codes: 0 gates passed · 1 internal error · 2 bad recipe, model or data · 3 a gate failed (the report
    is still written) · 4 a required tool is missing, or a device unreachable or lost · 130 interrupted. With
    several recipes, the most serious code of any build.
    """
    from compiler_kit.recipe import parse_overrides

    settings = BuildSettings(force, cache_dir, quiet, compiler, assignments or [], devices or [], accept_new_host_key)
    overrides = parse_overrides(settings.assignments)  # a malformed --set stops here, before any build
    with INTERRUPTS.during_command():  # SIGTERM (a CI runner cancelling the job) ends a build like Ctrl-C
        try:
            try:
                if len(recipes) == 1 and ray is None:
                    _build_one(recipes[0], out, settings, overrides)
                else:
                    _build_many(recipes, out, jobs, ray, settings)
            finally:
                INTERRUPTS.decide()  # a signal from here on is held back (cli/errors.py, Interrupts)
        except KeyboardInterrupt:
            typer.echo(
                "error: interrupted: the build folder keeps only complete artifacts, and the next build reuses "
                "every finished stage",
                err=True,
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None


@dataclass(frozen=True)
class BuildSettings:
    """The options every build of one command shares."""

    force: bool
    cache_dir: Path | None
    quiet: bool
    compiler: Path | None
    assignments: list[str]  # --set KEY=VALUE
    devices: list[str]  # --device URL
    accept_new_host_key: bool

    def as_options(self) -> list[str]:
        """The same settings for a `ckit build` of its own (a batch's builds, a Ray task)."""
        return [
            *(["--force"] if self.force else []),
            *(["--cache-dir", str(self.cache_dir.resolve())] if self.cache_dir else []),
            *(["--compiler", str(self.compiler.resolve())] if self.compiler else []),
            *(["--quiet"] if self.quiet else []),
            *(option for assignment in self.assignments for option in ("--set", assignment)),
            *(option for url in self.devices for option in ("--device", url)),
            *(["--accept-new-host-key"] if self.accept_new_host_key else []),
        ]


def _build_one(recipe: Path, out: Path | None, settings: BuildSettings, overrides: dict[str, Any]) -> None:
    from compiler_kit.cache import StageCache, default_root
    from compiler_kit.pipeline import build as run_build
    from compiler_kit.progress import Reporter
    from compiler_kit.recipe import load_recipe, with_devices
    from compiler_kit.report import REPORT_HTML, REPORT_JSON, REPORT_MD, terminal_summary

    loaded = with_devices(load_recipe(recipe, overrides), settings.devices, settings.accept_new_host_key)
    if settings.compiler is not None:
        edgetpu = loaded.edgetpu.model_copy(update={"compiler": settings.compiler.resolve()})
        loaded = loaded.model_copy(update={"edgetpu": edgetpu})
    cache = StageCache(settings.cache_dir or default_root(), force=settings.force)
    progress = (lambda _: None) if settings.quiet else _progress
    reporter = Reporter.for_terminal(settings.quiet)
    try:
        result = run_build(loaded, recipe, out, progress=progress, cache=cache, reporter=reporter)
    finally:
        reporter.close()
    INTERRUPTS.decide()  # the reports are written: the verdict stands, whatever signal comes now
    typer.echo(terminal_summary(result.report))
    for warning in result.report["warnings"]:  # never silent, gate or no gate
        typer.echo(f"warning: {warning}", err=True)
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


def _build_many(recipes: list[Path], out: Path | None, jobs: int, ray: str | None, settings: BuildSettings) -> None:
    from compiler_kit.batch import BatchBuild, BuildJob, RayBuild, worst_exit
    from compiler_kit.progress import Reporter

    if out is not None and len(recipes) > 1:
        typer.echo("error: --out names one build folder: give one recipe, or set output.dir in each", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    options = settings.as_options()
    own = ("--out", str(out.resolve())) if out else ()
    reporter = Reporter.for_terminal(settings.quiet)
    batch = (
        RayBuild(ray, options, reporter, exit_disconnects=True)
        if ray
        else BatchBuild(options, jobs, reporter, quiet=settings.quiet)
    )
    try:
        with batch, reporter.stage("batch"), reporter.task("builds", len(recipes)) as landed:
            outcomes = batch.run([BuildJob(recipe, own) for recipe in recipes], landed)
    finally:
        reporter.close()
    typer.echo("\n".join(f"{o.verdict:>12}  {o.seconds:6.1f} s  {o.recipe}" for o in outcomes))
    if code := worst_exit([outcome.exit_code for outcome in outcomes]):
        raise typer.Exit(code)


def _progress(message: str) -> None:
    typer.echo(message, err=True)
