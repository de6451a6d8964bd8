"""`make bench`: ckit against the bare work it wraps, on the example recipes. Prints a table, writes JSON.

    .venv/bin/python -m benchmarks.run [--only a,b,c,d,e,f] [--runs N] [--check]

a  cold `ckit build recipes/digits_keras.yaml` against benchmarks/bare_keras_build.py (the same conversions,
   inferences, latency loops and per-layer pass, with no compiler_kit): whole fresh processes, interleaved,
   median of --runs each; target ckit / bare <= 1.15.
b  warm rebuild (same recipe, same --out, same CKIT_CACHE_DIR, nothing changed) against the cold build; <= 0.10.
c  `ckit --help` start-up (beside `python -c "import tensorflow"`); target < 0.5 s.
d  verification throughput: the verify stage's work for tflite-int8 (Dataset + LiteRtRunner through its
   run_all) against a bare LiteRT loop on preprocessed samples, >= 0.9 of its samples/s; and the peak RSS
   of the whole `ckit build` with 1x and 10x the verification samples (eval split tiled), growth < 20 %.
e  MobileNetV2 int8 against float TFLite, p50 latency at 1 and 2 threads (ckit's runner and latency loop, 20
   warm-up + 200 timed runs in 5 blocks alternating float and int8, a fresh process per thread count); target
   int8 / float < 1 (int8 is the faster model).
f  `ckit tune` (the digits recipe, three trials, two at a time) cold on a local two-CPU Ray cluster against the
   local process pool: wall-time ratio <= 1.10 (Ray's overhead per trial at most 10 %), the trials' numbers equal.
g  a device over SSH on loopback (benchmarks/device.py): the agent's latency over SSH within 5 % of the same agent
   here; the verify stage with 1000 samples and the device within 2x of it without; 20 builds whose device is
   killed at random points: 0 tracebacks, 0 partial results reported as complete.

Every cold `ckit build` gets an empty --out folder and an empty CKIT_CACHE_DIR of its own (and --force when this
ckit has it): nothing is reused from another build or from the user's cache. Results: benchmarks/results/
bench-<UTC time>.json and latest.json, with every raw number, the machine, the versions and the command.
Exit code 0 when every measurement was taken (1 when one could not be; with --check, 3 when a target is missed).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.device import measure_device
from benchmarks.measure import (
    REPO,
    CommandFailed,
    ProcessRun,
    environment,
    git_state,
    machine,
    median,
    run_process,
    versions,
)
from benchmarks.ray_cluster import new_cluster
from benchmarks.targets import Measurement, Target, growth_pct, parse_only, ratio, table
from compiler_kit.gates import drift_comparison

RESULTS = REPO / "benchmarks" / "results"
DIGITS = REPO / "recipes" / "digits_keras.yaml"
MOBILENET = REPO / "recipes" / "mobilenet_v2.yaml"
BARE_SCRIPT = REPO / "benchmarks" / "bare_keras_build.py"
PYTHON = sys.executable
BUILD_OK = (0, 3)  # 3: a gate failed; the build ran to the end and wrote its report

TARGETS = {
    "a": Target("<=", 1.15),
    "b": Target("<=", 0.10),
    "c": Target("<", 0.5, " s"),
    "d_throughput": Target(">=", 0.9),
    "d_memory": Target("<", 20.0, " %"),
    "e": Target("<", 1.0),
    "f": Target("<=", 1.10),
    "g_latency": Target("<=", 5.0, " %"),
    "g_verify": Target("<=", 2.0),
    "g_disconnect": Target("<=", 0),
}


def ckit_command() -> list[str]:
    """The `ckit` console script beside this interpreter (what users run), else `python -m compiler_kit`."""
    script = Path(PYTHON).parent / "ckit"
    return [str(script)] if script.exists() else [PYTHON, "-m", "compiler_kit"]


def supports_force() -> bool:
    return "--force" in run_process([*ckit_command(), "build", "--help"]).stdout


@dataclass
class Build:
    """One `ckit build` process and the folders it used."""

    run: ProcessRun
    out: Path
    cache: Path
    report: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {
            "seconds": self.run.seconds,
            "peak_rss_mb": self.run.peak_rss_mb,
            "exit_code": self.run.exit_code,
            "command": self.run.command,
            "stage_seconds": self.report.get("stage_seconds"),
            "cache": self.report.get("cache"),
        }


@dataclass
class Suite:
    workdir: Path
    runs: int
    force: bool
    raw: dict[str, Any] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    cold_digits: list[Build] = field(default_factory=list)

    def fresh(self, prefix: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=self.workdir))

    def ckit_build(self, recipe: Path, out: Path, cache: Path, cold: bool) -> Build:
        extra = ["--force"] if cold and self.force else []
        command = [*ckit_command(), "build", str(recipe), "--out", str(out), "--quiet", *extra]
        run = run_process(command, env=environment(CKIT_CACHE_DIR=str(cache)), ok=BUILD_OK)
        return Build(run, out, cache, json.loads((out / "report.json").read_text()))

    def cold_build(self, recipe: Path, tag: str) -> Build:
        build = self.ckit_build(recipe, self.fresh(f"{tag}-out"), self.fresh(f"{tag}-cache"), cold=True)
        log(f"  cold ckit build {recipe.name}: {build.run.seconds:.2f} s, peak RSS {build.run.peak_rss_mb:.0f} MB")
        return build

    def digits_build(self) -> Build:
        """A cold build of the digits recipe: the last one of (a), or a new one."""
        if not self.cold_digits:
            self.cold_digits.append(self.cold_build(DIGITS, "digits"))
        return self.cold_digits[-1]

    def add(self, key: str, name: str, value: float | None, unit: str = "", detail: str = "") -> None:
        target = TARGETS[key]
        self.measurements.append(Measurement(key[0], name, value, target, unit, detail))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- a: cold build against the bare converter calls ------------------------------------------------------------


def bare_build(suite: Suite) -> tuple[ProcessRun, dict[str, Any], Path]:
    out = suite.fresh("bare-out")
    run = run_process([PYTHON, str(BARE_SCRIPT), str(DIGITS), "--out", str(out)])
    log(f"  bare build: {run.seconds:.2f} s, peak RSS {run.peak_rss_mb:.0f} MB")
    return run, json.loads(run.stdout.strip().splitlines()[-1]), out


def measure_cold(suite: Suite) -> None:
    bare_runs: list[tuple[ProcessRun, dict[str, Any], Path]] = []
    for _ in range(suite.runs):  # interleaved: background load drifts over both alike
        bare_runs.append(bare_build(suite))
        suite.cold_digits.append(suite.cold_build(DIGITS, "a"))
    ckit_s = median([b.run.seconds for b in suite.cold_digits])
    bare_s = median([run.seconds for run, _, _ in bare_runs])
    _, bare_summary, bare_out = bare_runs[-1]
    ckit_build = suite.cold_digits[-1]
    ckit_int8 = drift_comparison(ckit_build.report["comparisons"])["metrics"]
    same_work = {
        "int8_accuracy": [bare_summary["accuracy"].get("tflite-int8"), ckit_int8["accuracy_candidate"]],
        "top1_agreement": [bare_summary["top1_agreement"], ckit_int8["top1_agreement"]],
        "int8_tflite_sha256": [
            sha256(bare_out / "model_int8.tflite"),
            ckit_build.report["artifacts"]["int8_tflite"]["sha256"],
        ],
    }
    suite.raw["a"] = {
        "recipe": str(DIGITS),
        "ckit": [b.summary() for b in suite.cold_digits],
        "bare": [{**run.as_dict(), "stdout": summary} for run, summary, _ in bare_runs],
        "median_s": {"ckit": ckit_s, "bare": bare_s},
        "same_work_check": same_work,
    }
    suite.add(
        "a", "cold ckit build / bare converter calls", ratio(ckit_s, bare_s), detail=f"{ckit_s:.2f} s / {bare_s:.2f} s"
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- b: warm rebuild -------------------------------------------------------------------------------------------


def measure_warm(suite: Suite) -> None:
    cold = suite.digits_build()
    warm = []
    for _ in range(suite.runs):
        warm.append(suite.ckit_build(DIGITS, cold.out, cold.cache, cold=False))
        log(f"  warm ckit build: {warm[-1].run.seconds:.2f} s")
    cold_s = median([b.run.seconds for b in suite.cold_digits])
    warm_s = median([b.run.seconds for b in warm])
    suite.raw["b"] = {"cold": [b.summary() for b in suite.cold_digits], "warm": [b.summary() for b in warm]}
    suite.add(
        "b",
        "warm rebuild / cold build",
        ratio(warm_s, cold_s),
        detail=f"{warm_s:.2f} s / {cold_s:.2f} s; {cache_note(warm[-1].report)}",
    )


def cache_note(report: dict[str, Any]) -> str:
    """What report.json says the stage cache did: e.g. '5/5 stages reused'."""
    section = report.get("cache")
    if not isinstance(section, dict) or not isinstance(section.get("stages"), dict):
        return "report.json has no stage cache section: this ckit has no cache yet"
    statuses = [str(stage.get("status")) for stage in section["stages"].values()]
    return f"{statuses.count('hit')}/{len(statuses)} stages reused"


# --- c: start-up -----------------------------------------------------------------------------------------------


def measure_startup(suite: Suite) -> None:
    runs = max(5, suite.runs)
    tf = [run_process([PYTHON, "-c", "import tensorflow"]).seconds for _ in range(runs)]
    help_ = [run_process([*ckit_command(), "--help"]).seconds for _ in range(runs)]
    suite.raw["c"] = {"ckit_help_s": help_, "import_tensorflow_s": tf}
    suite.add("c", "ckit --help start-up", median(help_), " s", detail=f"import tensorflow: {median(tf):.2f} s")


# --- d: verification throughput and memory ---------------------------------------------------------------------


def measure_throughput(suite: Suite) -> None:
    build = suite.digits_build()
    command = [PYTHON, "-m", "benchmarks.probes", "throughput", str(DIGITS), str(build.out)]
    probe = json.loads(run_process(command).stdout)
    best, median_ = probe["best_samples_per_s"], probe["median_samples_per_s"]
    suite.raw["d_throughput"] = probe
    suite.add(
        "d_throughput",
        "verify throughput, ckit / bare LiteRT loop",
        ratio(best["ckit"], best["bare"]),
        detail=f"best round {best['ckit']:.0f} / {best['bare']:.0f} samples/s; "
        f"medians {ratio(median_['ckit'], median_['bare']):.2f}",
    )


def digits_copy(workdir: Path, name: str, verify_data: Path | None = None) -> Path:
    """The digits recipe in `workdir` with absolute paths (what ckit writes beside it stays out of the repo)."""
    recipe = yaml.safe_load(DIGITS.read_text())
    folder = DIGITS.parent
    for section in (recipe["source"], recipe["calibration"]["data"], recipe["verify"]["data"]):
        section["path"] = str((folder / section["path"]).resolve())
    if verify_data is not None:
        recipe["verify"]["data"]["path"] = str(verify_data)
    recipe.pop("output", None)
    path = workdir / name
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def tiled_recipe(workdir: Path, times: int) -> Path:
    """The digits recipe with `times` copies of the eval split as verification data (temp npz, temp recipe)."""
    with np.load(DIGITS.parent / yaml.safe_load(DIGITS.read_text())["verify"]["data"]["path"]) as data:
        arrays = {key: np.concatenate([data[key]] * times) for key in data.files}
    data_path = workdir / f"eval_x{times}.npz"
    np.savez(data_path, **arrays)
    return digits_copy(workdir, f"digits_keras_x{times}.yaml", data_path)


def measure_memory(suite: Suite) -> None:
    suite.digits_build()
    one = median([b.run.peak_rss_mb for b in suite.cold_digits])
    ten = suite.cold_build(tiled_recipe(suite.workdir, 10), "x10")
    suite.raw["d_memory"] = {
        "peak_rss_mb_1x": [b.run.peak_rss_mb for b in suite.cold_digits],
        "verify_samples": [verify_samples(suite.cold_digits[-1].report), verify_samples(ten.report)],
        "x10": ten.summary(),
    }
    suite.add(
        "d_memory",
        "ckit build peak RSS growth, 1x -> 10x verify samples",
        growth_pct(one, ten.run.peak_rss_mb),
        " %",
        detail=f"{one:.0f} MB -> {ten.run.peak_rss_mb:.0f} MB",
    )


def verify_samples(report: dict[str, Any]) -> int | None:
    return report.get("inputs", {}).get("datasets", {}).get("verify", {}).get("samples")


# --- e: MobileNetV2 int8 against float -------------------------------------------------------------------------


def measure_mobilenet(suite: Suite) -> None:
    build = suite.cold_build(MOBILENET, "mobilenet")
    probes = {}
    for threads in (1, 2):
        command = [
            PYTHON,
            "-m",
            "benchmarks.probes",
            "latency",
            str(MOBILENET),
            str(build.out),
            "--threads",
            str(threads),
        ]
        probes[threads] = json.loads(run_process(command).stdout)
        p50 = probes[threads]["p50_ms"]
        log(
            f"  MobileNetV2 p50, {threads} thread(s): float {p50['tflite-float']:.2f}, int8 {p50['tflite-int8']:.2f} ms"
        )
        suite.add(
            "e",
            f"MobileNetV2 p50 int8 / float, {threads} thread{'s' if threads > 1 else ''}",
            ratio(p50["tflite-int8"], p50["tflite-float"]),
            detail=f"{p50['tflite-int8']:.2f} / {p50['tflite-float']:.2f} ms",
        )
    suite.raw["e"] = {"build": build.summary(), "build_latency": build.report.get("latency"), "threads": probes}


# --- f: ckit tune's trials as Ray tasks against the local process pool ------------------------------------------

TUNE_SPACE = "- {name: p99.99, set: {calibration.method: percentile}}\n- {name: mse, set: {calibration.method: mse}}\n"


def measure_ray(suite: Suite) -> None:
    """The same tune (the digits recipe and three trials, two at a time) cold, with the local pool and on a local
    two-CPU Ray cluster; the ratio of wall times is Ray's overhead per trial, and the trials' numbers must match."""
    recipe, space = digits_copy(suite.workdir, "digits_tune.yaml"), suite.workdir / "space.yaml"
    space.write_text(TUNE_SPACE)
    address, stop = start_ray_cluster()
    runs: dict[str, list[dict[str, Any]]] = {"local": [], "ray": []}
    try:
        for _ in range(suite.runs):
            for how, extra in (("local", ["-j", "2"]), ("ray", ["--ray", address])):
                out, cache = suite.fresh(f"f-{how}-out"), suite.fresh(f"f-{how}-cache")
                command = [*ckit_command(), "tune", str(recipe), "--space", str(space), "--out", str(out)]
                run = run_process([*command, "--cache-dir", str(cache), *extra])
                trials = json.loads((out / "tune.json").read_text())["trials"]
                runs[how].append({"seconds": run.seconds, "snr_db": [t["snr_db"] for t in trials]})
                log(f"  ckit tune ({how}): {run.seconds:.1f} s")
    finally:
        stop()
    local, ray = (median([r["seconds"] for r in runs[how]]) for how in ("local", "ray"))
    same = all(r["snr_db"] == runs["local"][0]["snr_db"] for r in runs["local"] + runs["ray"])
    suite.raw["f"] = runs
    detail = f"{ray:.1f} s / {local:.1f} s; trial results identical: {'yes' if same else 'NO'}"
    suite.add("f", "ckit tune on Ray / local pool (3 trials)", ratio(ray, local) if same else None, detail=detail)


def start_ray_cluster() -> tuple[str, Callable[[], object]]:
    """`ray start --head` on a free loopback port with two CPUs, and how to stop it (its own processes only)."""
    cluster = new_cluster()
    run_process(cluster.start_command(Path(PYTHON).with_name("ray")))
    return cluster.address, cluster.stop


def measure_device_part(suite: Suite) -> None:
    measure_device(suite, tiled_recipe)


PARTS: dict[str, tuple[str, list[Callable[[Suite], None]]]] = {
    "a": ("cold build against the bare converter calls", [measure_cold]),
    "b": ("warm rebuild", [measure_warm]),
    "c": ("ckit --help start-up", [measure_startup]),
    "d": ("verification throughput and peak memory", [measure_throughput, measure_memory]),
    "e": ("MobileNetV2 int8 against float latency", [measure_mobilenet]),
    "f": ("ckit tune on a local Ray cluster against the local process pool", [measure_ray]),
    "g": ("a device over SSH on loopback against the same work here", [measure_device_part]),
}


def run_parts(suite: Suite, keys: list[str]) -> list[str]:
    """Run the chosen parts (start-up first); return what failed."""
    failed = []
    run_process([PYTHON, "-c", "import tensorflow, keras"])  # untimed: TensorFlow's files into the page cache
    for key in sorted(keys, key=lambda k: (k != "c", k)):
        title, steps = PARTS[key]
        log(f"[{key}] {title}")
        for step in steps:
            try:
                step(suite)
            except (CommandFailed, OSError, KeyError, ValueError) as exc:
                failed.append(f"{key}/{step.__name__}: {exc}")
                suite.raw.setdefault("errors", []).append(failed[-1])
                log(f"  failed: {exc}")
    return failed


def document(suite: Suite, argv: list[str], started: str) -> dict[str, Any]:
    return {
        "started_utc": started,
        "finished_utc": now(),
        "command": [PYTHON, "-m", "benchmarks.run", *argv],
        "cwd": str(REPO),
        "machine": machine(),
        "versions": versions(),
        "git": git_state(),
        "settings": {"runs": suite.runs, "force": suite.force},
        "measurements": [m.as_dict() for m in suite.measurements],
        "raw": suite.raw,
    }


def write_results(doc: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"bench-{doc['started_utc'].replace(':', '').replace('-', '')}.json"
    text = json.dumps(doc, indent=2) + "\n"
    path.write_text(text)
    (folder / "latest.json").write_text(text)
    return path


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(PARTS)} (default: all)")
    parser.add_argument("--runs", type=int, default=3, help="processes per timed measurement (median; default 3)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the JSON results")
    parser.add_argument("--check", action="store_true", help="exit 3 when a target is not met")
    args = parser.parse_args(argv)
    try:
        keys = parse_only(args.only, PARTS)
    except ValueError as exc:
        parser.error(str(exc))
    started = now()
    workdir = Path(tempfile.mkdtemp(prefix="ckit-bench-"))
    try:
        suite = Suite(workdir, max(1, args.runs), supports_force())
        failed = run_parts(suite, keys)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    suite.measurements.sort(key=lambda m: m.key)
    path = write_results(document(suite, argv, started), args.results)
    print(table(suite.measurements))
    print(f"results: {path}")
    if failed:
        return 1
    return 3 if args.check and any(m.met is False for m in suite.measurements) else 0


if __name__ == "__main__":
    sys.exit(main())
