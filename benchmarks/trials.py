"""`make trials`: reliability trials of the real `ckit` CLI, each a `python -m compiler_kit build|inspect` subprocess
run from the repo root on the digits recipes (recipes/digits_keras.yaml, some recipes/digits_onnx.yaml), made
absolute and small (50 calibration and 100 verification samples, 2 + 10 latency runs: a cold build takes seconds).

    python -m benchmarks.trials [--only sigkill,hostile-inputs] [--quick] [--seed N] [--workers N]

Every trial has a folder of its own under one scratch folder: its recipe, build folder, stage cache (--cache-dir,
and CKIT_CACHE_DIR) and TMPDIR, so nothing touches ~/.cache/ckit. The families and what each trial checks:

sigkill         (20) a cold build SIGKILLed after a seeded random delay within a reference cold build's duration,
                then built again to completion: the second build exits 0, neither prints a traceback,
                model_int8.tflite is the reference build's (sha256), the build folder holds no temporary name
                (`*.tmp`, hidden files but .ckit.lock), the cache no `tmp/<pid>-*` staging folder and TMPDIR no
                `ckit-onnx2tf-*` folder. Every third trial builds the ONNX recipe; the kill hits the whole process
                group (as a CI runner does), in three ONNX trials only ckit's own process (as the OOM killer would),
                orphaning onnx2tf's worker, whose end is awaited before the leftovers are looked for.
concurrent      (10) two or three builds of one recipe into one build folder, started at once on one empty cache:
                all exit 0 without a traceback, the artifacts are the reference's, nothing temporary is left.
damaged-cache   (18 kinds) a copy of a warm cache with one entry damaged (files truncated, flipped, deleted, added,
                replaced by folders; entry.json empty, invalid, missing, a folder; numbers and names in its metadata
                changed): the build exits 0, warns on stderr that the entry is corrupt, rebuilds it (the report says
                `corrupt`, the next build reuses it silently), and no planted value reaches a report.
unusable-cache  (6) the cache is a file; a stage folder is a file (cold and warm); its tmp/ is a file; it is a
                read-only bind mount (`unshare -rm`), cold and warm: exit 0, no traceback, exactly one warning
                about the cache on stderr (the issue asks for at most one; compiler_kit/cache.py promises one), the
                reference's artifacts, no temporary folder left in the build folder.
disk-full       (12) the build folder, and in four trials the cache too, on a tmpfs of 200 KB to 2 MB (`unshare
                -rm`): exit 2 with exactly one `error:` line naming a folder on that tmpfs and `No space left on
                device` and a `fix:` line (or exit 0: it fit), no traceback, the three reports all or none, nothing
                temporary left.
hostile-inputs  (141, benchmarks/trial_inputs.py) bad recipes, model files, data, baseline reports and `ckit
                inspect` arguments: exit 2, no traceback, exactly one `error:` message naming the file or the recipe
                field at fault, with a `fix:` line.
sigterm         (5) SIGTERM to the build at seeded random points, one right after the `report:` line (teardown):
                exit 130 or 0, no traceback, nothing temporary left in the build folder, cache or TMPDIR.

Targets: 0 tracebacks; 0 tampered numbers used; 100 % of bad inputs exit 2 with one message naming the file or
field and a fix; no temporary folder leaked after SIGKILL. --quick runs a few trials of each family (minutes).
Prints a table (family, trials, passed, each failure's reason) and writes benchmarks/results/trials.json.
Exit code 0 when every trial passed, 3 when one failed.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks import trial_checks as checks
from benchmarks.measure import REPO, git_state, machine, versions
from benchmarks.targets import parse_only
from benchmarks.trial_inputs import Invocation, ckit, hostile_cases, shipped_recipe, write_yaml

RESULTS = REPO / "benchmarks" / "results" / "trials.json"
INT8, FLOAT = "model_int8.tflite", "model_float.tflite"
CACHED = ("convert", "quantize", "edgetpu", "verify", "latency")
TIMEOUT_S = 600
LISTING = "@@ckit-trials-listing@@"
Problems = list[str]


# --- processes ---


@dataclass(frozen=True)
class Run:
    code: int | None  # None: timed out (and killed)
    stdout: str
    stderr: str
    seconds: float


def start(command: list[str], env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    """`command` in a session of its own (so its whole process group can be signalled), output into files."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "stdout").open("wb") as stdout, (out / "stderr").open("wb") as stderr:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=stdout, stderr=stderr, start_new_session=True)


def finish(process: subprocess.Popen[bytes], out: Path, began: float, timeout: float = TIMEOUT_S) -> Run:
    try:
        code: int | None = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process.pid)
        process.wait()
        code = None
    seconds = time.perf_counter() - began
    text = {name: (out / name).read_text(errors="replace") for name in ("stdout", "stderr")}
    return Run(code, text["stdout"], text["stderr"], seconds)


def run(command: list[str], env: dict[str, str], out: Path, timeout: float = TIMEOUT_S) -> Run:
    began = time.perf_counter()
    return finish(start(command, env, out), out, began, timeout)


def kill_group(pgid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
    wait_group_gone(pgid)


def group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies, which nothing may reap here, do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def wait_group_gone(pgid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


def in_namespace(setup: str, command: list[str], listed: Path | None = None) -> list[str]:
    """`command` after the shell `setup` (mounts) in a user and mount namespace of its own (tests/conftest.py's
    in_mount_namespace); with `listed`, every path under it is printed on stdout after the command, before the
    namespace and its mounts go."""
    if listed is None:
        script = f'{setup} && exec "$@"'
    else:
        find = f'find {shlex.quote(str(listed))} -mindepth 1 -printf "%P\\n"'
        script = f'{setup} && "$@"; code=$?; echo {LISTING}; {find}; exit $code'
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", *command]


def namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(in_namespace("true", ["true"]), capture_output=True).returncode == 0


# --- a trial's folder ---


@dataclass(frozen=True)
class Sandbox:
    """One trial's recipe, build folder, stage cache and TMPDIR."""

    root: Path
    kind: str
    build: Path
    cache: Path

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def env(self) -> dict[str, str]:
        overrides = {"TMPDIR": str(self.tmp), "CKIT_CACHE_DIR": str(self.cache), "XDG_CACHE_HOME": str(self.root)}
        return {**os.environ, **overrides}

    def command(self, *extra: str) -> list[str]:
        return ckit("build", str(self.recipe), "--cache-dir", str(self.cache), *extra)

    def run(self, label: str, *extra: str, wrap: Callable[[list[str]], list[str]] | None = None) -> Run:
        command = self.command(*extra)
        return run(wrap(command) if wrap else command, self.env(), self.root / "runs" / label)


def make_sandbox(root: Path, kind: str = "keras", build: Path | None = None, cache: Path | None = None) -> Sandbox:
    shutil.rmtree(root, ignore_errors=True)
    (root / "tmp").mkdir(parents=True)
    box = Sandbox(root, kind, build or root / "build", cache or root / "cache")
    write_yaml(box.recipe, shipped_recipe(kind, box.build))
    return box


def sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def read_report(build: Path) -> dict[str, Any]:
    path = build / "report.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def report_texts(build: Path) -> list[str]:
    return [(build / name).read_text(errors="replace") for name in checks.REPORTS if (build / name).is_file()]


# --- references: one cold build of each recipe ---


@dataclass(frozen=True)
class Reference:
    box: Sandbox
    int8_sha256: str
    seconds: float
    report: dict[str, Any]


class HarnessError(RuntimeError):
    """The trials cannot run (a reference build failed): not a verdict on a trial."""


@dataclass
class Context:
    scratch: Path
    seed: int
    quick: bool
    workers: int
    references: dict[str, Reference] = field(default_factory=dict)

    def rng(self, family: str) -> random.Random:
        return random.Random(f"{self.seed}:{family}")

    def sandbox(self, family: str, name: str, kind: str = "keras", **where: Path) -> Sandbox:
        return make_sandbox(self.scratch / family / name.split(" ")[0], kind, **where)

    def reference(self, kind: str) -> Reference:
        if kind not in self.references:
            self.references[kind] = build_reference(self.scratch / "reference" / kind, kind)
        return self.references[kind]


def build_reference(root: Path, kind: str) -> Reference:
    """Two cold builds, each with an empty cache of its own: the first warms the system's file cache, the second
    gives the duration the signal delays are drawn from; both must make the same int8 model (the premise of every
    artifact check)."""
    builds = [_cold_build(root / name, kind) for name in ("first", "second")]
    if builds[0][1] != builds[1][1]:
        raise HarnessError(f"two cold {kind} builds made different {INT8} files: the artifact checks cannot hold")
    box, digest, done = builds[1]
    return Reference(box, digest, done.seconds, read_report(box.build))


def _cold_build(root: Path, kind: str) -> tuple[Sandbox, str, Run]:
    box = make_sandbox(root, kind)
    done = box.run("cold")
    if done.code != 0 or checks.has_traceback(done.stderr) or not (digest := sha256(box.build / INT8)):
        raise HarnessError(f"the reference {kind} build failed ({done.code}): {checks.last_line(done.stderr)}")
    return box, digest, done


def artifact_problems(build: Path, reference: Reference) -> Problems:
    """model_int8.tflite is the reference build's, and report.json describes the files beside it."""
    problems = []
    if (digest := sha256(build / INT8)) != reference.int8_sha256:
        problems.append(f"{INT8} {'missing' if digest is None else 'differs from the reference build'}")
    artifacts = read_report(build).get("artifacts") or {}
    for name, entry in artifacts.items():
        if sha256(Path(entry["path"])) != entry["sha256"]:
            problems.append(f"report.json's {name} sha256 is not the file's")
    return problems


def leftover_problems(box: Sandbox, *, onnx_work: bool = True) -> Problems:
    problems = []
    if found := checks.leftovers(checks.listing(box.build)):
        problems.append(f"left in the build folder: {', '.join(found[:3])}")
    if found := checks.staging_leftovers(checks.listing(box.cache)):
        problems.append(f"staging folder left in the cache: {', '.join(found[:3])}")
    if onnx_work and (found := checks.work_dir_leftovers(os.listdir(box.tmp) if box.tmp.is_dir() else [])):
        problems.append(f"left in TMPDIR: {', '.join(found[:3])}")
    return problems


def labelled(label: str, problems: Problems) -> Problems:
    return [f"{label}: {problem}" for problem in problems]


# --- trials and families ---


@dataclass(frozen=True)
class Verdict:
    problems: Problems
    note: str = ""  # what the trial did, where that is not in its name (where a signal landed)


@dataclass(frozen=True)
class Trial:
    name: str
    check: Callable[[], Problems | Verdict]


@dataclass
class Outcome:
    name: str
    problems: Problems
    seconds: float
    note: str = ""

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def reason(self) -> str:
        return checks.clip("; ".join(self.problems), 300)


def attempt(trial: Trial) -> Outcome:
    began = time.perf_counter()
    try:
        found = trial.check()
    except Exception as exc:  # the harness's own failure: recorded against the trial, never hidden
        found = [f"harness error: {type(exc).__name__}: {checks.clip(str(exc))}"]
    verdict = found if isinstance(found, Verdict) else Verdict(found)
    return Outcome(trial.name, verdict.problems, round(time.perf_counter() - began, 1), verdict.note)


def pick(ctx: Context, items: list[Any], quick: int) -> list[Any]:
    """All `items`, or `quick` (>= 2) of them spread over the list, the first and the last among them, with --quick."""
    if not ctx.quick or len(items) <= quick:
        return items
    return [items[round(i * (len(items) - 1) / (quick - 1))] for i in range(quick)]


# signals at chosen points of a build (families 1 and 7)

SIGNALLED_STAGES = ("convert", *CACHED[1:], "report")  # data takes milliseconds


@dataclass(frozen=True)
class When:
    """When the signal goes: `seconds` after the start, or `after` seconds past the first line of the process's
    `stream` that starts with `line` (a stage's progress line on stderr, the `report:` line on stdout)."""

    seconds: float | None = None
    line: str = ""
    stream: str = "stderr"
    after: float = 0.0

    def __str__(self) -> str:
        if self.seconds is not None:
            return f"at {self.seconds:.2f} s"
        return f"{self.after:.2f} s after '{self.line}'"

    def sooner(self) -> When:
        return When(self.seconds / 2) if self.seconds is not None else dataclasses.replace(self, after=self.after / 2)


def into_a_stage(reference: Reference, rng: random.Random, stage: str | None = None, share: float = 0.9) -> When:
    """A random moment of a stage (a random one of SIGNALLED_STAGES by default), within `share` of the time it took
    in the reference build."""
    stage = stage or rng.choice(SIGNALLED_STAGES)
    number = 2 + SIGNALLED_STAGES.index(stage)
    return When(line=f"[{number}/7] {stage}", after=rng.uniform(0.0, share) * reference.report["stage_seconds"][stage])


@dataclass(frozen=True)
class Signalled:
    run: Run
    pgid: int
    note: str  # where the signal landed: the seconds and the last progress line before it
    landed: bool  # False: the build had finished first


def wait_for_line(process: subprocess.Popen[bytes], path: Path, prefix: str, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if any(line.startswith(prefix) for line in path.read_text(errors="replace").splitlines()):
            return
        time.sleep(0.002)


def signalled_run(box: Sandbox, when: When, send: Callable[[subprocess.Popen[bytes]], None]) -> Signalled:
    """The build, with `send(process)` at `when` if it still runs then."""
    out = box.root / "runs" / "signalled"
    began = time.perf_counter()
    process = start(box.command(), box.env(), out)
    if when.seconds is None:
        wait_for_line(process, out / when.stream, when.line)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=when.seconds if when.seconds is not None else when.after)
    landed = process.poll() is None
    at = time.perf_counter() - began
    if landed:
        send(process)
    done = finish(process, out, began)
    note = f"at {at:.2f} s, {checks.stage_reached(done.stderr)}" if landed else ""
    return Signalled(done, process.pid, note, landed)


def signalled_until_it_lands(
    make_box: Callable[[], Sandbox], when: When, send: Callable[[subprocess.Popen[bytes]], None]
) -> tuple[Sandbox, Signalled]:
    """A delay the build outlived is halved, up to three times, so that the signal hits a running build (or, after
    a line, tried again: the build may end between the line and the signal)."""
    for _ in range(4):
        box = make_box()
        signalled = signalled_run(box, when, send)
        if signalled.landed:
            return box, signalled
        when = when.sooner()
    return box, signalled


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    kill_group(process.pid)


def _kill_main(process: subprocess.Popen[bytes]) -> None:
    process.kill()


def _terminate(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)


def landed_note(signalled: Signalled) -> Problems:
    return [] if signalled.landed else ["harness: the build finished before the signal"]


# 1. sigkill


def sigkill_trials(ctx: Context) -> list[Trial]:
    """Every third trial builds the ONNX recipe. Even trials kill after a random share of a cold build's duration,
    odd ones a random moment into a random stage (so that storing entries and writing reports are hit too). The
    kill hits the whole process group (as a CI runner does), but in trials 5, 11 and 17 only ckit's own process
    (as the OOM killer would) while onnx2tf's worker runs, orphaning it."""
    rng = ctx.rng("sigkill")
    trials = []
    for index in range(20):
        kind, group = ("onnx" if index % 3 == 2 else "keras"), index % 6 != 5
        reference = ctx.reference(kind)
        if not group:
            when = into_a_stage(reference, rng, "convert", share=0.8)  # onnx2tf's worker runs most of it
        elif index % 2:
            when = into_a_stage(reference, rng)
        else:
            when = When(rng.uniform(0.02, 0.95) * reference.seconds)
        name = f"{kind}-{index:02d} kill {'group' if group else 'main'} {when}"
        trials.append(Trial(name, partial(sigkill_trial, ctx, kind, when, group, index)))
    return pick(ctx, trials, 5)


def sigkill_trial(ctx: Context, kind: str, when: When, group: bool, index: int) -> Verdict:
    make_box = partial(ctx.sandbox, "sigkill", f"{kind}-{index:02d}", kind)
    box, killed = signalled_until_it_lands(make_box, when, _kill_group if group else _kill_main)
    again = box.run("again")
    wait_group_gone(killed.pgid)  # an orphaned worker has finished (or had 30 s) before the leftovers are looked for
    problems = landed_note(killed) + labelled("killed build", checks.traceback_problems(killed.run.stderr))
    problems += labelled("second build", checks.build_problems(again.code, again.stderr))
    problems += artifact_problems(box.build, ctx.reference(kind)) + leftover_problems(box)
    return Verdict(problems, f"killed {killed.note}")


# 2. concurrent


def concurrent_trials(ctx: Context) -> list[Trial]:
    trials = []
    for index in range(10):
        kind, count = ("onnx" if index % 5 == 4 else "keras"), 2 + index % 2
        trials.append(Trial(f"{kind}-{index:02d} x{count}", partial(concurrent_trial, ctx, kind, count, index)))
    return pick(ctx, trials, 2)


def concurrent_trial(ctx: Context, kind: str, count: int, index: int) -> Problems:
    box = ctx.sandbox("concurrent", f"{kind}-{index:02d}", kind)
    began = time.perf_counter()
    processes = [start(box.command(), box.env(), box.root / "runs" / str(n)) for n in range(count)]
    runs = [finish(p, box.root / "runs" / str(n), began) for n, p in enumerate(processes)]
    problems = []
    for number, done in enumerate(runs, start=1):
        problems += labelled(f"build {number}", checks.build_problems(done.code, done.stderr))
    return problems + artifact_problems(box.build, ctx.reference(kind)) + leftover_problems(box)


# 3. damaged-cache


@dataclass(frozen=True)
class Damage:
    stage: str
    apply: Callable[[Path], None]  # damages the stage's entry folder
    planted: tuple[str, ...] = ()  # values that must never reach a report
    expect: Callable[[dict[str, Any], dict[str, Any]], Problems] | None = None  # (report, reference report)


def _only_file(entry: Path, name: str) -> Path:
    return next(path for path in (entry / "files").rglob(name))


def _truncate(name: str) -> Callable[[Path], None]:
    def apply(entry: Path) -> None:
        path = _only_file(entry, name)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    return apply


def _flip(name: str) -> Callable[[Path], None]:
    def apply(entry: Path) -> None:
        path = _only_file(entry, name)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    return apply


def _replace_file(name: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    def apply(entry: Path) -> None:
        path = _only_file(entry, name)
        path.unlink()
        make(path)

    return apply


def _entry_json(make: Callable[[Path], None]) -> Callable[[Path], None]:
    def apply(entry: Path) -> None:
        path = entry / "entry.json"
        path.unlink()
        make(path)

    return apply


def _meta(change: Callable[[Any], Any]) -> Callable[[Path], None]:
    """Rewrite the metadata in entry.json (valid JSON, its recorded hash left as it was)."""

    def apply(entry: Path) -> None:
        path = entry / "entry.json"
        document = json.loads(path.read_text())
        document["meta"] = change(document["meta"])
        path.write_text(json.dumps(document, indent=1))

    return apply


def _updated(where: Callable[[Any], dict[str, Any]], **values: Any) -> Callable[[Any], Any]:
    def change(meta: Any) -> Any:
        where(meta).update(values)
        return meta

    return change


def _files_a_file(entry: Path) -> None:
    shutil.rmtree(entry / "files")
    (entry / "files").write_bytes(b"not a folder")


def _emptied(entry: Path) -> None:
    shutil.rmtree(entry)
    entry.mkdir()


def _same_edgetpu(report: dict[str, Any], reference: dict[str, Any]) -> Problems:
    found, expected = report.get("edgetpu", {}), reference.get("edgetpu", {})
    keys = ("ops_on_edgetpu", "ops_on_cpu", "ops")
    if any(found.get(key) != expected.get(key) for key in keys):
        return [f"tampered value used: report edgetpu ops_on_edgetpu {found.get('ops_on_edgetpu')}"]
    return []


P50, SNR, OP = 12345.678, 98765.4321, "TAMPERED_OP"
DAMAGES: dict[str, Damage] = {
    "truncated-int8": Damage("quantize", _truncate(INT8)),
    "flipped-byte-int8": Damage("quantize", _flip(INT8)),
    "zero-length-saved-model": Damage("convert", _replace_file("saved_model.pb", lambda p: p.write_bytes(b""))),
    "deleted-outputs": Damage("verify", _replace_file("outputs.npz", lambda p: None)),
    "extra-file": Damage("convert", lambda entry: (entry / "files" / "extra.bin").write_bytes(b"extra")),
    "file-a-folder": Damage("quantize", _replace_file(INT8, lambda p: p.mkdir())),
    "file-a-symlink": Damage("quantize", _replace_file(INT8, lambda p: p.symlink_to(p.parent / FLOAT))),
    "files-folder-a-file": Damage("quantize", _files_a_file),
    "empty-entry-folder": Damage("verify", _emptied),
    "empty-entry-json": Damage("latency", _entry_json(lambda p: p.write_text(""))),
    "invalid-entry-json": Damage("edgetpu", _entry_json(lambda p: p.write_text('{"stage": "edgetpu", "meta": {'))),
    "entry-json-missing": Damage("quantize", _entry_json(lambda p: None)),
    "entry-json-a-folder": Damage("latency", _entry_json(lambda p: p.mkdir())),
    "meta-a-list": Damage("edgetpu", _meta(lambda meta: list(meta.values()))),
    "latency-p50": Damage(
        "latency", _meta(_updated(lambda m: m["runners"]["tflite-int8"], p50_ms=P50)), planted=(str(P50),)
    ),
    "ops-on-edgetpu": Damage(
        "edgetpu", _meta(_updated(lambda m: m["section"], ops_on_edgetpu=4242, ops_on_cpu=0)), expect=_same_edgetpu
    ),
    "op-name": Damage("edgetpu", _meta(_updated(lambda m: m["section"]["ops"][0], operator=OP)), planted=(OP,)),
    "layer-snr": Damage("verify", _meta(_updated(lambda m: m["layers"][1], snr_db=SNR)), planted=(str(SNR),)),
}


def damaged_trials(ctx: Context) -> list[Trial]:
    trials = [Trial(f"{name} ({d.stage})", partial(damaged_trial, ctx, name, d)) for name, d in DAMAGES.items()]
    return pick(ctx, trials, 5)


def damaged_trial(ctx: Context, name: str, damage: Damage) -> Problems:
    reference = ctx.reference("keras")
    box = ctx.sandbox("damaged-cache", name)
    shutil.copytree(reference.box.cache, box.cache)
    [entry] = [path for path in (box.cache / damage.stage).iterdir() if path.is_dir()]
    damage.apply(entry)
    done = box.run("damaged")
    problems = checks.build_problems(done.code, done.stderr)
    if len(checks.corrupt_warnings(done.stderr, damage.stage)) != 1:
        problems.append(f"stderr does not say once that the {damage.stage} entry is corrupt")
    report = read_report(box.build)
    if (status := report.get("cache", {}).get("stages", {}).get(damage.stage, {}).get("status")) != "corrupt":
        problems.append(f"the report calls the {damage.stage} entry {status!r}, not 'corrupt'")
    if used := checks.tampered_values(report_texts(box.build), damage.planted):
        problems.append(f"tampered value used: {', '.join(used)}")
    problems += damage.expect(report, reference.report) if damage.expect else []
    problems += artifact_problems(box.build, reference) + leftover_problems(box)
    return problems + rebuilt_problems(box, damage.stage)


def rebuilt_problems(box: Sandbox, stage: str) -> Problems:
    """The entry was replaced by a good one: the next build reuses every stage and warns about nothing."""
    done = box.run("next")
    problems = labelled("next build", checks.build_problems(done.code, done.stderr))
    statuses = {name: found.get("status") for name, found in read_report(box.build)["cache"]["stages"].items()}
    if checks.cache_warnings(done.stderr) or set(statuses.values()) != {"hit"}:
        problems.append(f"next build: the cache was not repaired ({stage}: {statuses.get(stage)})")
    return problems


# 4. unusable-cache


def _a_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not a folder")


def _warm(box: Sandbox, reference: Reference) -> None:
    shutil.copytree(reference.box.cache, box.cache)


def _stage_a_file(box: Sandbox, reference: Reference) -> None:
    _warm(box, reference)
    shutil.rmtree(box.cache / "quantize")
    _a_file(box.cache / "quantize")


def _read_only(box: Sandbox) -> Callable[[list[str]], list[str]]:
    folder = shlex.quote(str(box.cache))
    return partial(in_namespace, f"mount --bind -o ro {folder} {folder}")


UNUSABLE: dict[str, tuple[Callable[[Sandbox, Reference], None], bool]] = {  # how, and whether it runs read-only
    "cache-is-a-file": (lambda box, ref: _a_file(box.cache), False),
    "stage-folder-a-file-cold": (lambda box, ref: _a_file(box.cache / "quantize"), False),
    "stage-folder-a-file-warm": (_stage_a_file, False),
    "tmp-a-file": (lambda box, ref: _a_file(box.cache / "tmp"), False),
    "read-only-cold": (lambda box, ref: box.cache.mkdir(), True),
    "read-only-warm": (_warm, True),
}


def unusable_trials(ctx: Context) -> list[Trial]:
    trials = [Trial(name, partial(unusable_trial, ctx, name)) for name in UNUSABLE]
    return pick(ctx, trials, 3)


def unusable_trial(ctx: Context, name: str) -> Problems:
    reference = ctx.reference("keras")
    box = ctx.sandbox("unusable-cache", name)
    prepare, read_only = UNUSABLE[name]
    prepare(box, reference)
    if read_only and not namespaces_work():
        return ["cannot run: no unprivileged user and mount namespaces here (unshare -rm)"]
    done = box.run("build", wrap=_read_only(box) if read_only else None)
    problems = checks.build_problems(done.code, done.stderr)
    if len(warnings := checks.cache_warnings(done.stderr)) != 1:
        problems.append(f"{len(warnings)} warnings about the cache on stderr (one says it cannot be written)")
    if name == "read-only-warm" and "reused from the cache" not in done.stderr:
        problems.append("a read-only warm cache was not reused")
    return problems + artifact_problems(box.build, reference) + leftover_problems(box)


# 5. disk-full

DISK_SIZES_KB = [(200, False), (300, False), (400, False), (500, False), (550, False), (600, False), (650, False)]
DISK_SIZES_KB += [(1000, False), (200, True), (600, True), (1000, True), (2000, True)]  # True: the cache too


def disk_full_trials(ctx: Context) -> list[Trial]:
    trials = []
    for size, with_cache in DISK_SIZES_KB:
        name = f"{size}k{'-with-cache' if with_cache else ''}"
        trials.append(Trial(name, partial(disk_full_trial, ctx, name, size, with_cache)))
    return pick(ctx, trials, 3)


def disk_full_trial(ctx: Context, name: str, size_kb: int, with_cache: bool) -> Problems:
    if not namespaces_work():
        return ["cannot run: no unprivileged user and mount namespaces here (unshare -rm)"]
    root = ctx.scratch / "disk-full" / name
    mount = root / "small"
    box = make_sandbox(root, build=mount / "build", cache=mount / "cache" if with_cache else None)
    mount.mkdir()
    setup = f"mount -t tmpfs -o size={size_kb}k tmpfs {shlex.quote(str(mount))}"
    done = box.run("build", wrap=lambda command: in_namespace(setup, command, listed=mount))
    stdout, paths = checks.parse_listing(done.stdout, LISTING)
    problems = checks.disk_full_problems(done.code, stdout, done.stderr, mount)
    built = [path.removeprefix("build/") for path in paths if path.startswith("build/")]
    if not checks.reports_all_or_none(built):
        problems.append(f"reports not all or none: {sorted(set(checks.REPORTS) & set(built))}")
    if done.code == 0 and not set(checks.REPORTS) <= set(built):
        problems.append("exit 0 without the three reports")
    if found := checks.leftovers(built) + checks.staging_leftovers(p.removeprefix("cache/") for p in paths):
        problems.append(f"left on the full disk: {', '.join(found[:3])}")
    return problems


# 6. hostile-inputs


def hostile_trials(ctx: Context) -> list[Trial]:
    tflite = ctx.reference("keras").box.build / INT8
    trials = []
    for case in pick(ctx, hostile_cases(tflite), 30):
        folder = ctx.scratch / "hostile-inputs" / case.name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        try:
            invocation = case.make(folder)
        except Exception as exc:
            trials.append(Trial(case.name, partial(_unmade, exc)))
            continue
        trials.append(Trial(case.name, partial(hostile_trial, folder, invocation)))
    return trials


def _unmade(exc: Exception) -> Problems:
    return [f"harness error: could not make the case: {type(exc).__name__}: {checks.clip(str(exc))}"]


def hostile_trial(folder: Path, invocation: Invocation) -> Problems:
    env = {**os.environ, "TMPDIR": str(folder), "CKIT_CACHE_DIR": str(folder / "cache"), "XDG_CACHE_HOME": str(folder)}
    done = run(ckit(*invocation.args), env, folder / "run")
    problems = checks.bad_input_problems(done.code, done.stdout, done.stderr, invocation.names)
    if (folder / "sentinel").exists():
        problems.append("the input ran code (its sentinel file exists)")
    return problems


# 7. sigterm


TEARDOWN_ATTEMPTS, TEARDOWN_WINDOW_S = 20, 0.003


def sigterm_trials(ctx: Context) -> list[Trial]:
    """Two at a random share of a cold build's duration (one ONNX), two a random moment into a random stage, one
    right after the `report:` line, where the verdict is decided and the process is on its way out: that one is 20
    warm builds, each signalled 0-3 ms after the line (before the fix, 4 of 150 such builds ended in a traceback)."""
    rng = ctx.rng("sigterm")
    plans = [
        ("keras", When(rng.uniform(0.5, 0.95 * ctx.reference("keras").seconds))),
        ("onnx", When(rng.uniform(0.5, 0.95 * ctx.reference("onnx").seconds))),
        ("keras", into_a_stage(ctx.reference("keras"), rng)),
        ("keras", into_a_stage(ctx.reference("keras"), rng)),
    ]
    trials = [
        Trial(f"{kind}-{index} term {when}", partial(sigterm_trial, ctx, kind, when, index))
        for index, (kind, when) in enumerate(plans)
    ]
    attempts = 5 if ctx.quick else TEARDOWN_ATTEMPTS
    teardown = f"keras-4 term 0-{TEARDOWN_WINDOW_S * 1000:.0f} ms after 'report: ' x{attempts}"
    trials.append(Trial(teardown, partial(teardown_trial, ctx, attempts)))
    return pick(ctx, trials, 2)


def sigterm_trial(ctx: Context, kind: str, when: When, index: int) -> Verdict:
    make_box = partial(ctx.sandbox, "sigterm", f"{kind}-{index}", kind)
    box, terminated = signalled_until_it_lands(make_box, when, _terminate)
    wait_group_gone(terminated.pgid)
    done = terminated.run
    problems = landed_note(terminated)
    problems += checks.build_problems(done.code, done.stderr, (checks.EXIT_INTERRUPTED, checks.EXIT_OK))
    return Verdict(problems + leftover_problems(box), f"terminated {terminated.note}, exit {done.code}")


def teardown_trial(ctx: Context, attempts: int) -> Verdict:
    rng = ctx.rng("sigterm-teardown")
    box = ctx.sandbox("sigterm", "keras-4")
    problems: Problems = []
    codes: collections.Counter[str] = collections.Counter()
    for attempt in range(1, attempts + 1):
        when = When(line="report: ", stream="stdout", after=rng.uniform(0.0, TEARDOWN_WINDOW_S))
        signalled = signalled_run(box, when, _terminate)
        done = signalled.run
        codes[f"exit {done.code}" if signalled.landed else "finished first"] += 1
        allowed = (checks.EXIT_INTERRUPTED, checks.EXIT_OK)
        problems += labelled(f"attempt {attempt}", checks.build_problems(done.code, done.stderr, allowed))
    return Verdict(problems + leftover_problems(box), ", ".join(f"{k}: {n}" for k, n in sorted(codes.items())))


# --- running the families ---

FAMILIES: dict[str, tuple[Callable[[Context], list[Trial]], bool]] = {  # trials, and whether they may run at once
    "sigkill": (sigkill_trials, False),
    "concurrent": (concurrent_trials, False),
    "damaged-cache": (damaged_trials, False),
    "unusable-cache": (unusable_trials, False),
    "disk-full": (disk_full_trials, False),
    "hostile-inputs": (hostile_trials, True),
    "sigterm": (sigterm_trials, False),
}


@dataclass
class FamilyResult:
    name: str
    outcomes: list[Outcome]
    seconds: float

    @property
    def passed(self) -> int:
        return sum(outcome.passed for outcome in self.outcomes)

    def as_dict(self) -> dict[str, Any]:
        rows = [
            {"name": o.name, "passed": o.passed, "reason": o.reason, "note": o.note, "seconds": o.seconds}
            for o in self.outcomes
        ]
        return {"trials": len(self.outcomes), "passed": self.passed, "seconds": round(self.seconds, 1), "results": rows}


def run_family(ctx: Context, name: str) -> FamilyResult:
    began = time.perf_counter()
    make_trials, parallel = FAMILIES[name]
    try:
        trials = make_trials(ctx)
    except HarnessError as exc:
        trials = [Trial("setup", partial(_failed_setup, exc))]
    print(f"{name}: {len(trials)} trials ...", file=sys.stderr, flush=True)
    workers = ctx.workers if parallel else 1
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        outcomes = list(pool.map(partial(_reported, name), trials))
    return FamilyResult(name, outcomes, time.perf_counter() - began)


def _failed_setup(exc: Exception) -> Problems:
    return [f"harness error: {exc}"]


def _reported(family: str, trial: Trial) -> Outcome:
    outcome = attempt(trial)
    verdict = "ok" if outcome.passed else f"FAILED: {outcome.reason}"
    note = f"; {outcome.note}" if outcome.note else ""
    print(f"  {family} / {outcome.name}: {verdict} ({outcome.seconds:.1f} s{note})", file=sys.stderr, flush=True)
    return outcome


def table(results: Iterable[FamilyResult]) -> str:
    results = list(results)
    width = max([len("family"), *(len(r.name) for r in results)])
    lines = [f"{'family':<{width}}  {'trials':>6}  {'passed':>6}", f"{'-' * width}  {'-' * 6}  {'-' * 6}"]
    for result in results:
        lines.append(f"{result.name:<{width}}  {len(result.outcomes):>6}  {result.passed:>6}")
        lines += [f"{'':<{width}}    FAILED {o.name}: {o.reason}" for o in result.outcomes if not o.passed]
    return "\n".join(lines)


def targets(results: Iterable[FamilyResult]) -> dict[str, Any]:
    """The issue's targets, counted over every trial that ran."""
    by_name = {result.name: result for result in results}
    problems = [p for result in by_name.values() for o in result.outcomes for p in o.problems]
    hostile = by_name.get("hostile-inputs")
    sigkill = by_name.get("sigkill")
    return {
        "tracebacks": sum("traceback" in p for p in problems),
        "tampered_values_used": sum(p.startswith("tampered value used") for p in problems),
        "bad_inputs_exit_2_with_message_pct": round(100 * hostile.passed / len(hostile.outcomes), 1)
        if hostile and hostile.outcomes
        else None,
        "leaks_after_sigkill": sum(_is_leak(p) for o in (sigkill.outcomes if sigkill else []) for p in o.problems),
    }


def _is_leak(problem: str) -> bool:
    return problem.startswith(("left in", "staging folder left"))


def write_results(path: Path, ctx: Context, results: list[FamilyResult], seconds: float, argv: list[str]) -> None:
    document = {
        "command": [sys.executable, "-m", "benchmarks.trials", *argv],
        "finished_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "seed": ctx.seed,
        "quick": ctx.quick,
        "machine": machine(),
        "versions": versions(),
        "git": git_state(),
        "references": {
            k: {"seconds": round(r.seconds, 1), "int8_sha256": r.int8_sha256} for k, r in ctx.references.items()
        },
        "targets": targets(results),
        "families": {result.name: result.as_dict() for result in results},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trials", description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(FAMILIES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="a few trials of each family (minutes)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill and signal delays (default 0)")
    parser.add_argument("--workers", type=int, default=2, help="hostile inputs run this many at once (default 2)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON file to write")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (its path is printed)")
    args = parser.parse_args(argv)
    try:
        families = parse_only(args.only, FAMILIES)
    except ValueError as exc:
        parser.error(str(exc))
    scratch = Path(tempfile.mkdtemp(prefix="ckit-trials-"))
    ctx = Context(scratch, args.seed, args.quick, args.workers)
    began = time.perf_counter()
    try:
        results = [run_family(ctx, name) for name in families]
    finally:
        if args.keep:
            print(f"scratch: {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - began
    write_results(args.results, ctx, results, seconds, argv)
    print(table(results))
    print(f"\ntargets: {json.dumps(targets(results))}")
    print(f"{seconds / 60:.1f} min; JSON: {args.results}")
    return 0 if all(r.passed == len(r.outcomes) for r in results) else 3


if __name__ == "__main__":
    raise SystemExit(main())
