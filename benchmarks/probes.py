"""In-process measurements, each run by `benchmarks/run.py` in a fresh process that prints one JSON document.

    python -m benchmarks.probes throughput RECIPE BUILD_DIR [--rounds N] [--passes P]
    python -m benchmarks.probes latency RECIPE BUILD_DIR --threads T [--warmup W] [--runs R] [--blocks B]

BUILD_DIR is a finished `ckit build` of RECIPE: its model_float.tflite, model_int8.tflite and, from its report.json,
the layout permutations the converter introduced (so the runners take source-layout samples, as in the build).

throughput: the verify stage's work for the tflite-int8 runner (compiler_kit's Dataset streamed through
    LiteRtRunner by its run_all, counting its samples on a live progress bar, as on a terminal) against a bare
    LiteRT loop over the same samples, preprocessed beforehand (set_tensor / invoke / get_tensor, quantize and
    dequantize by hand). Both sides include creating their interpreter, as a verify pass does; rounds alternate
    between the two, and each side's best round counts.
latency: compiler_kit's LiteRtRunner and bench.measure_latency (what the latency stage runs) on the float and the
    int8 model, on the first verification sample, with `threads` LiteRT threads, in blocks alternating between them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit.compare.outputs import compare_outputs, resolve_tasks
from compiler_kit.data import Dataset
from compiler_kit.lazy import litert_interpreter
from compiler_kit.progress import BarReporter, Reporter
from compiler_kit.recipe import Recipe, load_recipe
from compiler_kit.runners import LiteRtRunner
from compiler_kit.stages.data import verification_set
from compiler_kit.stages.quantize import FLOAT_TFLITE, INT8_TFLITE
from compiler_kit.stages.verify import run_all
from compiler_kit.timing import measure_latency

Perms = tuple[list[Any], list[Any]]


def layout_perms(build_dir: Path) -> Perms:
    """The build's (input perms, output perms), from report.json's `layout` section."""
    layout = json.loads((build_dir / "report.json").read_text())["layout"]
    return list(layout["inputs"].values()), list(layout["outputs"].values())


def ckit_pass(
    recipe: Recipe, verify: Dataset, model: Path, perms: Perms, reporter: Reporter
) -> Callable[[], np.ndarray]:
    """ckit's verification of one runner: outputs by name, then every output's signal and task metrics and their
    per-sample spread (against the outputs themselves: the arithmetic is the same whatever the reference)."""
    runner = LiteRtRunner("tflite-int8", model, recipe.verify.threads, perms[0])

    def run() -> np.ndarray:
        runner.prepare()  # as the bare pass makes its interpreter in every pass
        outputs, _ = run_all([runner], verify, recipe.inputs[0].name, reporter)
        produced = outputs[runner.name]
        shapes = {name: y.shape[1:] for name, y in produced.items()}
        tasks = resolve_tasks({}, shapes, channels_last=True, has_labels=verify.labels is not None)
        compare_outputs(produced, produced, tasks, verify.labels, verify.sample_names())
        (only,) = produced.values()
        return only

    return run


def bare_pass(samples: np.ndarray, model: Path, threads: int) -> Callable[[], np.ndarray]:
    """`samples` already in the model's layout and preprocessed; outputs are left in the model's layout."""
    interpreter_class, _ = litert_interpreter()

    def run() -> np.ndarray:
        interpreter = interpreter_class(model_path=str(model), num_threads=threads)
        interpreter.allocate_tensors()
        source, sink = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        in_scale, in_zero = source["quantization"]
        out_scale, out_zero = sink["quantization"]
        info = np.iinfo(source["dtype"])
        outputs = []
        for x in samples:
            q = np.clip(np.round(x / in_scale) + in_zero, info.min, info.max).astype(source["dtype"])
            interpreter.set_tensor(source["index"], q)
            interpreter.invoke()
            y = interpreter.get_tensor(sink["index"])
            outputs.append((y.astype(np.float32) - out_zero) * np.float32(out_scale))
        return np.concatenate(outputs)

    return run


def throughput(recipe_path: Path, build_dir: Path, rounds: int, passes: int) -> dict[str, Any]:
    """Samples/s of each side, per round (`passes` whole passes over the set, timed together). The verdict takes
    each side's best round: on a shared machine the other processes only ever slow a round down, so the best
    round is the closest to the code's own speed (the medians are kept too)."""
    recipe = load_recipe(recipe_path)
    verify = verification_set(recipe)
    (input_perm, *_), output_perms = perms = layout_perms(build_dir)
    if input_perm is not None or any(output_perms):
        raise ValueError("the bare loop takes models without a layout change (a Keras recipe)")
    samples = np.stack(list(verify))  # preprocessed once, outside the bare loop's clock
    model = build_dir / INT8_TFLITE
    bars = BarReporter(open(os.devnull, "w"))  # noqa: SIM115 (closed by bars.close) drawn as on a terminal, to nowhere
    passes_of = {
        "ckit": ckit_pass(recipe, verify, model, perms, bars),
        "bare": bare_pass(samples, model, recipe.verify.threads),
    }
    with bars.stage("verify"):
        outputs = {name: run() for name, run in passes_of.items()}  # one untimed pass each: imports, page cache
        per_second: dict[str, list[float]] = {name: [] for name in passes_of}
        for _ in range(rounds):
            for name, run in passes_of.items():  # alternating: a slow spell hits both sides
                start = time.perf_counter()
                for _ in range(passes):
                    run()
                per_second[name].append(passes * len(samples) / (time.perf_counter() - start))
    bars.close()
    return {
        "samples": len(samples),
        "rounds": rounds,
        "passes_per_round": passes,
        "samples_per_s": per_second,
        "best_samples_per_s": {name: max(values) for name, values in per_second.items()},
        "median_samples_per_s": {name: statistics.median(values) for name, values in per_second.items()},
        "same_outputs": bool(np.array_equal(outputs["ckit"], outputs["bare"])),
    }


def latency(recipe_path: Path, build_dir: Path, threads: int, warmup: int, runs: int, blocks: int) -> dict[str, Any]:
    """p50 of the float and the int8 model, timed by ckit's own loop (bench.measure_latency) in `blocks` blocks
    that alternate between the two models, so a burst of load from another process lands on both; the timed runs
    of all blocks are pooled per model."""
    recipe = load_recipe(recipe_path)
    verify = verification_set(recipe)
    feed = {recipe.inputs[0].name: verify.sample(int(verify.indices[0]))}
    perms = layout_perms(build_dir)
    runners = {}
    for name, file in {"tflite-float": FLOAT_TFLITE, "tflite-int8": INT8_TFLITE}.items():
        runner = runners[name] = LiteRtRunner(name, build_dir / file, threads, perms[0])
        runner.prepare()
        runner.infer(feed)
    first_ms = {name: runner.last_inference_ms for name, runner in runners.items()}
    stats: dict[str, list[dict[str, Any]]] = {name: [] for name in runners}
    for block in range(blocks):
        for name, runner in runners.items():
            block_warmup = warmup if block == 0 else 0
            block_runs = runs // blocks + (1 if block < runs % blocks else 0)
            measured = measure_latency(runner, feed, first_ms=first_ms[name], warmup=block_warmup, runs=block_runs)
            stats[name].append(measured.as_dict())
    pooled = {name: [t for block in blocks_ for t in block["samples_ms"]] for name, blocks_ in stats.items()}
    return {
        "threads": threads,
        "warmup": warmup,
        "runs": runs,
        "blocks": blocks,
        "first_ms": first_ms,
        "p50_ms": {name: statistics.median(times) for name, times in pooled.items()},
        "block_stats": stats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes")
    commands = parser.add_subparsers(dest="command", required=True)
    rate = commands.add_parser("throughput")
    rate.add_argument("recipe", type=Path)
    rate.add_argument("build_dir", type=Path)
    rate.add_argument("--rounds", type=int, default=20)
    rate.add_argument("--passes", type=int, default=5, help="passes over the samples per timed round")
    timing = commands.add_parser("latency")
    timing.add_argument("recipe", type=Path)
    timing.add_argument("build_dir", type=Path)
    timing.add_argument("--threads", type=int, required=True)
    timing.add_argument("--warmup", type=int, default=20)
    timing.add_argument("--runs", type=int, default=200)
    timing.add_argument("--blocks", type=int, default=5, help="alternating blocks the timed runs are split into")
    args = parser.parse_args()
    if args.command == "throughput":
        result = throughput(args.recipe, args.build_dir, args.rounds, args.passes)
    else:
        result = latency(args.recipe, args.build_dir, args.threads, args.warmup, args.runs, args.blocks)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
