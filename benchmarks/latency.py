"""Benchmark: `ckit --help` start-up, build time, peak memory and per-runner latency at 1 and 2 threads.

Run `make bench` (or `.venv/bin/python benchmarks/latency.py [RECIPE ...]`; default: the Keras digits and the
MobileNetV2 recipes). Prints a table and writes benchmarks/results/latency.json. Each build runs in its own
process: TensorFlow's thread count is fixed at import.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "latency.json"
CKIT = [sys.executable, "-m", "compiler_kit"]


def help_seconds(runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([*CKIT, "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build(recipe_path: Path, threads: int, workdir: Path) -> dict:
    recipe = yaml.safe_load(recipe_path.read_text())
    recipe["verify"]["threads"] = threads
    recipe["gates"] = {}
    variant = recipe_path.parent / f".bench-{threads}-{recipe_path.name}"  # beside the original: same relative paths
    variant.write_text(yaml.safe_dump(recipe, sort_keys=False))
    out = workdir / f"threads{threads}"
    try:
        start = time.perf_counter()
        subprocess.run([*CKIT, "build", str(variant), "--out", str(out), "--quiet"], check=True, capture_output=True)
        seconds = time.perf_counter() - start
    finally:
        variant.unlink()
    return {"threads": threads, "wall_s": seconds, "report": json.loads((out / "report.json").read_text())}


DEFAULT_RECIPES = [REPO / "recipes" / "digits_keras.yaml", REPO / "recipes" / "mobilenet_v2.yaml"]


def main() -> None:
    recipes = [Path(arg) for arg in sys.argv[1:]] or DEFAULT_RECIPES
    with tempfile.TemporaryDirectory() as tmp:
        builds = [build(recipe, threads, Path(tmp) / recipe.stem) for recipe in recipes for threads in (1, 2)]
    result = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "ckit_help_s": help_seconds(),
        # ru_maxrss of children is the largest of them: the peak of the biggest build
        "build_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "builds": [
            {
                "recipe": b["report"]["name"],
                "threads": b["threads"],
                "wall_s": round(b["wall_s"], 2),
                "stage_seconds": b["report"]["stage_seconds"],
                "latency": b["report"]["latency"],
            }
            for b in builds
        ],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"ckit --help: {result['ckit_help_s']:.2f} s (median of 5); build peak RSS {result['build_peak_rss_mb']} MB")
    print(f"{'recipe':<14} {'threads':>7} {'build s':>8} {'runner':<13} {'first ms':>9} {'p50 ms':>9} {'p99 ms':>9}")
    for b in result["builds"]:
        for name, stats in b["latency"].items():
            print(
                f"{b['recipe']:<14} {b['threads']:>7} {b['wall_s']:>8.1f} {name:<13} "
                f"{stats['first_ms']:>9.4f} {stats['p50_ms']:>9.4f} {stats['p99_ms']:>9.4f}"
            )
    print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
