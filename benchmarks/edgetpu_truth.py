"""The static Edge TPU analysis against the real compiler, on models Coral published with their compiled twins.

Usage:
    python -m benchmarks.edgetpu_truth populate --mirror DIR [--mirror DIR ...]
    python -m benchmarks.edgetpu_truth derive      # rewrites benchmarks/edgetpu_truth/truth.json (maintainers)
    python -m benchmarks.edgetpu_truth [--only NAME,NAME]    # the comparison: a table and results/edgetpu_truth.json

benchmarks/edgetpu_truth/pairs.json names each pair: an int8 .tflite and the *_edgetpu.tflite that Coral's
edgetpu_compiler made of it, by repository, commit, path and git blob id; `role` is "dev" (the rules were written
looking at it) or "held_out" (chosen before any rule changed, never looked at while writing them).

The ground truth, truth.json, is derived from the compiled files with the project's own flatbuffer reader: every op
left outside an `edgetpu-custom-op` is an op the compiler put on the CPU (matched to the input model's op by its
operator and output tensor names); the number of edgetpu-custom-ops is the number of Edge TPU subgraphs; the ops on
the Edge TPU are the input model's ops minus those on the CPU (the custom op's options are the compiled executable,
with no op count we can read). It is committed, so the comparison needs only the input models.

Where the models come from: the files are in git repositories on GitHub, too large for this repository and not
on any package registry. `populate` copies them, by blob id, out of local clones or mirrors of the repositories in
pairs.json (`git clone https://github.com/google-coral/test_data` and `.../google-coral/edgetpu`, or a bare mirror)
into $CKIT_EDGETPU_TRUTH_CACHE (default ~/.cache/ckit-edgetpu-truth), each checked against its blob id. Nothing is
downloaded at run time; a pair whose input model is not cached is reported as skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compiler_kit.edgetpu.analysis import EDGETPU_CUSTOM_OP, analyze
from compiler_kit.edgetpu.tflite_graph import Op, load_model, read_ops

HERE = Path(__file__).resolve().parent
PAIRS = HERE / "edgetpu_truth" / "pairs.json"
TRUTH = HERE / "edgetpu_truth" / "truth.json"
RESULTS = HERE / "results" / "edgetpu_truth.json"
CACHE = Path(os.environ.get("CKIT_EDGETPU_TRUTH_CACHE", Path.home() / ".cache" / "ckit-edgetpu-truth")).expanduser()
ROLES = ("dev", "held_out")


@dataclass(frozen=True)
class Pair:
    name: str
    role: str
    repo: str
    commit: str
    model_path: str
    model_blob: str
    compiled_path: str
    compiled_blob: str

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> Pair:
        model, compiled = entry["model"], entry["compiled"]
        return cls(
            entry["name"], entry["role"], entry["repo"], entry["commit"],
            model["path"], model["blob"], compiled["path"], compiled["blob"],
        )  # fmt: skip

    @property
    def model(self) -> Path:
        return cached(self.model_blob)

    @property
    def compiled(self) -> Path:
        return cached(self.compiled_blob)

    @property
    def source(self) -> str:
        return f"{self.repo}@{self.commit[:7]}:{self.model_path}"


def load_pairs(path: Path = PAIRS) -> list[Pair]:
    return [Pair.from_json(entry) for entry in json.loads(path.read_text())["pairs"]]


def load_truth(path: Path = TRUTH) -> dict[str, dict[str, Any]]:
    return json.loads(path.read_text())["models"]


POPULATE_HINT = (
    "fill the cache once with `python -m benchmarks.edgetpu_truth populate --mirror CLONE_OF_google-coral/test_data "
    "--mirror CLONE_OF_google-coral/edgetpu` (README: make edgetpu-truth)"
)


def cached(blob: str) -> Path:
    return CACHE / "blobs" / f"{blob}.tflite"


def git_blob_id(data: bytes) -> str:
    """What `git hash-object` says of these bytes: the id pairs.json records."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# --- populate: copy the published files out of git repositories ---


def populate(pairs: list[Pair], mirrors: list[Path]) -> list[str]:
    """Copy every file of `pairs` found in one of the `mirrors` (git directories or work trees) into the cache;
    the blob ids of those found nowhere."""
    (CACHE / "blobs").mkdir(parents=True, exist_ok=True)
    missing = []
    for blob in dict.fromkeys(b for pair in pairs for b in (pair.model_blob, pair.compiled_blob)):
        if cached(blob).is_file():
            continue
        data = next((d for mirror in mirrors if (d := _read_blob(mirror, blob)) is not None), None)
        if data is None or git_blob_id(data) != blob:
            missing.append(blob)
            continue
        partial = cached(blob).with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(cached(blob))
    return missing


def _read_blob(mirror: Path, blob: str) -> bytes | None:
    done = subprocess.run(["git", "-C", str(mirror), "cat-file", "blob", blob], capture_output=True)
    return done.stdout if done.returncode == 0 else None


# --- derive: the compiler's verdict, read from the compiled file ---


class NotAPair(ValueError):
    """The published compiled file was not made from the published input model."""


def _outputs(op: Op) -> tuple[str, ...]:
    return tuple(t.name for t in op.outputs)


def compiler_verdict(model: Path, compiled: Path) -> dict[str, Any]:
    """What the compiler did to `model`, from `compiled`: the CPU ops (index in `model` and operator), the number of
    Edge TPU subgraphs and the op counts."""
    model_ops = read_ops(load_model(model), model)
    compiled_ops = read_ops(load_model(compiled), compiled)
    by_outputs = {(op.operator, _outputs(op)): op for op in model_ops}
    cpu = [op for op in compiled_ops if op.operator != EDGETPU_CUSTOM_OP]
    unmatched = [op.operator for op in cpu if (op.operator, _outputs(op)) not in by_outputs]
    if unmatched:
        raise NotAPair(
            f"the compiled file has CPU ops the input model lacks ({', '.join(unmatched)}): it was "
            "compiled from another version of the model"
        )
    cpu_ops = sorted((by_outputs[op.operator, _outputs(op)] for op in cpu), key=lambda op: op.index)
    return {
        "total_ops": len(model_ops),
        "ops_on_edgetpu": len(model_ops) - len(cpu_ops),
        "ops_on_cpu": len(cpu_ops),
        "edgetpu_subgraphs": sum(op.operator == EDGETPU_CUSTOM_OP for op in compiled_ops),
        "cpu_ops": [[op.index, op.operator] for op in cpu_ops],
    }


def derive(pairs: list[Pair]) -> dict[str, Any]:
    models = {}
    for pair in pairs:
        try:
            verdict = compiler_verdict(pair.model, pair.compiled)
        except NotAPair as exc:
            verdict = {"invalid": str(exc)}
        models[pair.name] = {"role": pair.role, "source": pair.source, "compiled": pair.compiled_path, **verdict}
    return {
        "about": "What edgetpu_compiler did to each model of pairs.json, read from its published *_edgetpu.tflite "
        "by `python -m benchmarks.edgetpu_truth derive`: cpu_ops are [index in the input model, operator] of the ops "
        "outside the edgetpu-custom-op; edgetpu_subgraphs counts the edgetpu-custom-ops; ops_on_edgetpu = total_ops - "
        "ops_on_cpu.",
        "models": models,
    }


# --- compare: ckit's prediction against the compiler's verdict ---


def predicted_verdict(model: Path) -> dict[str, Any]:
    prediction = analyze(model)
    cpu_ops = [op for op in prediction.per_op if not op.mapped]
    return {
        "ops_on_edgetpu": prediction.ops_on_edgetpu,
        "ops_on_cpu": prediction.ops_on_cpu,
        "edgetpu_subgraphs": prediction.edgetpu_subgraphs,
        "cpu_ops": [[op.index, op.operator] for op in cpu_ops],
    }


def compare(pair: Pair, truth: dict[str, Any]) -> dict[str, Any]:
    """One row: the real and the predicted verdicts, and whether the CPU ops (which ones, not only how many) and the
    subgraph count agree exactly. A crash of the analysis is a row too."""
    row: dict[str, Any] = {"name": pair.name, "role": pair.role, "source": pair.source, "real": truth}
    if "invalid" in truth:
        return {**row, "status": "invalid", "why": truth["invalid"]}
    if not pair.model.is_file():
        return {**row, "status": "skipped", "why": f"not cached: {pair.model} (see populate)"}
    try:
        predicted = predicted_verdict(pair.model)
    except Exception as exc:  # the benchmark counts crashes; it must not stop at the first
        return {**row, "status": "crash", "why": f"{type(exc).__name__}: {exc}"}
    inspected = inspect_exit(pair.model)
    if inspected["exit_code"] != 0:
        return {**row, "status": "crash", "why": f"ckit inspect: {inspected['error']}", "predicted": predicted}
    exact = predicted["cpu_ops"] == truth["cpu_ops"] and predicted["edgetpu_subgraphs"] == truth["edgetpu_subgraphs"]
    return {**row, "status": "exact" if exact else "differs", "predicted": predicted}


def inspect_exit(model: Path) -> dict[str, Any]:
    """`ckit inspect --json` as a user runs it (with the latency prediction, whose CPU part LiteRT runs): its exit
    code and last line of error."""
    done = subprocess.run(
        [sys.executable, "-m", "compiler_kit", "inspect", "--json", str(model)], capture_output=True, text=True
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith(("error:", "Traceback")) or "Error" in line]
    return {"exit_code": done.returncode, "error": errors[-1] if errors else ""}


def summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    return {
        role: {
            status: sum(row["role"] == role and row["status"] == status for row in rows)
            for status in ("exact", "differs", "crash", "skipped", "invalid")
        }
        for role in ROLES
    }


def _ops(verdict: dict[str, Any]) -> str:
    if "invalid" in verdict:
        return "-"
    return f"{verdict['ops_on_edgetpu']} / {verdict['ops_on_cpu']} / {verdict['edgetpu_subgraphs']}"


def _difference(row: dict[str, Any]) -> str:
    if row["status"] != "differs":
        return row.get("why", "")
    real = {tuple(op) for op in row["real"]["cpu_ops"]}
    predicted = {tuple(op) for op in row["predicted"]["cpu_ops"]}
    extra = sorted(predicted - real)
    missed = sorted(real - predicted)
    return "; ".join(
        part
        for part in (
            f"predicted on the CPU, mapped for real: {_names(extra)}" if extra else "",
            f"on the CPU for real, predicted mapped: {_names(missed)}" if missed else "",
        )
        if part
    )


def _names(ops: Iterable[tuple[int, str]]) -> str:
    return ", ".join(f"#{index} {name}" for index, name in ops)


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown, as the README shows it: per pair the real and predicted Edge TPU / CPU ops / subgraphs."""
    lines = [
        "| pair | role | real: TPU / CPU / subgraphs | ckit: TPU / CPU / subgraphs | agreement | difference |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        predicted = _ops(row["predicted"]) if "predicted" in row else "-"
        lines.append(
            f"| {row['name']} | {row['role']} | {_ops(row['real'])} | {predicted} | {row['status']} "
            f"| {_difference(row)} |"
        )
    return "\n".join(lines)


def run(pairs: list[Pair], truth: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rows = [compare(pair, truth[pair.name]) for pair in pairs]
    return {"rows": rows, "summary": summary(rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="compare", choices=("compare", "populate", "derive"))
    parser.add_argument("--mirror", action="append", type=Path, default=[], help="a git clone or mirror (populate)")
    parser.add_argument("--only", default="", help="comma-separated pair names")
    args = parser.parse_args(argv)
    pairs = [p for p in load_pairs() if not args.only or p.name in args.only.split(",")]
    if args.command == "populate":
        missing = populate(pairs, args.mirror)
        print(f"cached in {CACHE}: {2 * len(pairs) - len(missing)} files; missing: {missing or 'none'}")
        return 1 if missing else 0
    if args.command == "derive":
        TRUTH.write_text(json.dumps(derive(pairs), indent=1) + "\n")
        print(f"wrote {TRUTH}")
        return 0
    result = run(pairs, load_truth())
    print(table(result["rows"]))
    print(json.dumps(result["summary"]))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
