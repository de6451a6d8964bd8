"""`ckit tune RECIPE`: quantization settings tried as cached builds; the best written as a recipe."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from compiler_kit.cli.errors import exits_cleanly
from compiler_kit.cli.options import CacheDir, RayAddress
from compiler_kit.errors import EXIT_BAD_INPUT, EXIT_GATE_FAILED

if TYPE_CHECKING:  # the batch and tune modules load only when a tune runs
    from compiler_kit.batch import BatchBuild, RayBuild
    from compiler_kit.progress import Reporter
    from compiler_kit.tune import TrialResult


@exits_cleanly
def tune(
    recipe: Annotated[Path, typer.Argument(help="The recipe to tune, e.g. recipes/digits_keras.yaml.")],
    space: Annotated[
        Path | None,
        typer.Option(
            "--space",
            help="Search space YAML: a grid (each recipe key maps to a list of values; every combination is a "
            "trial), a list of trials (each a name and a set of recipe keys), or {rounds: [...]} of such, each round "
            "after the first set on top of each of the two best trials so far. Default, two rounds: the recipe as "
            "written, percentile 99.99 and 99.999, mse, and (ONNX, torch) cross-layer equalization, bias correction "
            "and both; then on each of the two best of those: GPTQ weight rounding, empirical bias correction, both, "
            "and 1000 calibration samples.",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder of the trials and tune reports (default BUILD-tune).")
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Trials built at once (after the first).")] = 1,
    cache_dir: CacheDir = None,
    ray: RayAddress = None,
) -> None:
    """Try quantization settings on a recipe as cached builds, and keep the best.

    Each trial is a full `ckit build` sharing the stage cache (the model is converted once). The best passes the
    gates, then has the best int8 accuracy (a labelled classifier) or SNR. Writes RECIPE.tuned.yaml beside the
    recipe (unless the recipe as written is best), and tune.json, tune.md and tune.html with every trial.

    Exit codes: 0 the best trial passes its gates · 2 bad recipe or search space, or no trial built · 3 no
    trial passes the gates · 130 interrupted.
    """
    from compiler_kit.batch import BatchBuild, RayBuild
    from compiler_kit.cli.build import BuildSettings
    from compiler_kit.progress import Reporter

    options = BuildSettings(False, cache_dir, True, None, [], [], False).as_options()  # what every trial's build shares
    reporter = Reporter.for_terminal(quiet=False)
    batch = (
        RayBuild(ray, options, reporter, exit_disconnects=True)
        if ray
        else BatchBuild(options, jobs, reporter, quiet=True)
    )
    try:
        results, folder = _run(recipe, space, out, batch, reporter)
    finally:
        reporter.close()
    from compiler_kit.tune import TUNE_HTML, TUNE_JSON, TUNE_MD, best, tuned_recipe, write_tune_report

    chosen = best(results)
    write_tune_report(folder, recipe, results, chosen)
    typer.echo(f"tune: {folder / TUNE_JSON}  {folder / TUNE_MD}  {folder / TUNE_HTML}")
    if chosen is None:
        typer.echo("error: no trial built: see the trials' build.log under trials/", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    result = f"best: {chosen.name} ({chosen.metric} {chosen.score:.4g})"
    if chosen.settings:
        typer.echo(f"{result}: {tuned_recipe(recipe, chosen)}")
    else:
        typer.echo(f"{result}: the recipe as written is the best; nothing to change")
    if not chosen.passed:
        typer.echo("gate failed: no trial passes the recipe's gates", err=True)
        raise typer.Exit(EXIT_GATE_FAILED)


def _run(
    recipe: Path, space: Path | None, out: Path | None, batch: BatchBuild | RayBuild, reporter: Reporter
) -> tuple[list[TrialResult], Path]:
    """Every trial's result, and the tune's folder."""
    from compiler_kit.recipe import load_recipe
    from compiler_kit.tune import default_space, load_space, run_trials

    with batch:  # entered first: connecting to Ray (in the background) overlaps loading the recipe
        loaded = load_recipe(recipe)  # a bad recipe fails here, once, not in every trial
        searched = load_space(space) if space else default_space(loaded.source.framework)
        folder = out or loaded.build_dir(recipe).with_name(f"{loaded.name}-tune")
        with reporter.stage("tune"), reporter.task("trials", searched.size) as landed:
            return run_trials(recipe, searched, folder, batch, landed), folder
