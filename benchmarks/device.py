"""`make bench` part g: a device over SSH, against the same work here. The device is Debian's sshd on a loopback port
with .venv-device's Python (tflite-runtime 2.14.0), started as the tests start it (tests/ssh_device.py).

g_latency     the agent's timed runs over SSH against the same agent run locally (a `local` device, the same
              Python): p50s within 5 % of each other (the copy to the device is excluded, and reported apart);
g_verify      the verify stage of builds with 1050+ verification samples and the device, against the same builds
              without it: ratio <= 2;
g_disconnect  20 builds with the device, sshd and its sessions killed at a seeded random point of each: no
              traceback, and no build that lost its device reports success or writes a report.
"""

from __future__ import annotations

import json
import random
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.measure import environment, median, run_process
from benchmarks.targets import ratio

TRIALS, SEED = 20, 20261130
VERIFY_SAMPLES = 1000


def measure_device(suite: Any, tiled_recipe: Callable[[Path, int], Path]) -> None:
    from tests.ssh_device import missing, start_device

    if absent := missing():
        raise OSError(f"part g needs {', '.join(absent)}: run `make sshd device-venv`")
    device = start_device(suite.fresh("g-sshd"), suite.fresh("g-workdir"))
    try:
        recipe = tiled_recipe(suite.workdir, 3)
        _latency(suite, device, suite.digits_build().out / "model_int8.tflite")
        _verify(suite, device, recipe)
        _disconnects(suite, device, recipe)
    finally:
        device.kill_sessions()


def _device_fields(device: Any) -> dict[str, str]:
    return {
        "url": device.url(),
        "name": "board",
        "python": str(device.python),
        "identity": str(device.identity),
        "known_hosts": str(device.known_hosts),
    }


def _latency(suite: Any, device: Any, model: Path) -> None:
    from compiler_kit.device.session import AgentCall, ModelJob
    from compiler_kit.recipe import Device
    from compiler_kit.runners.litert import LiteRtRunner

    io = LiteRtRunner("io", model, 1)
    io.prepare()
    inputs = io.encode({"x": np.random.default_rng(0).uniform(0, 1, (1, *io.inputs[0]["shape"][1:]))})
    calls = {
        "local": AgentCall(Device(url="local", python=str(device.python))),
        "ssh": AgentCall(Device(**_device_fields(device))),
    }
    p50: dict[str, list[float]] = {"local": [], "ssh": []}
    copy_s = []
    for _ in range(max(5, suite.runs)):
        for how, call in calls.items():  # interleaved: drift of the machine hits both alike
            run = call.run([ModelJob("m", model, False)], inputs, threads=1, warmup=1000, runs=20_000)
            p50[how].append(float(np.median(run.models["m"].latency_ms)))
            if how == "ssh":
                copy_s.append(run.transfer_s)
    local, remote = median(p50["local"]), median(p50["ssh"])
    suite.raw["g_latency"] = {"p50_ms": p50, "ssh_transfer_s": copy_s}
    detail = f"p50 {remote * 1e3:.2f} us over ssh / {local * 1e3:.2f} us local; copy {median(copy_s) * 1e3:.0f} ms"
    difference = abs(remote / local - 1) * 100 if local else None
    suite.add("g_latency", "device agent p50 over SSH against the same agent here", difference, " %", detail)


def _verify(suite: Any, device: Any, recipe: Path) -> None:
    """Builds with and without the device, interleaved (the machine's load hits both alike), each round on its own
    subset size so that its verify stage runs again (the other stages come from the shared cache)."""
    seconds: dict[str, list[float]] = {"plain": [], "device": []}
    for round_ in range(max(3, suite.runs)):
        settings = [f"verify.num_samples={VERIFY_SAMPLES + 50 + round_}"]
        plain = _build(suite, recipe, "g-plain", settings)
        with_device = _build(suite, recipe, "g-device", [*settings, _devices_setting(device)])
        seconds["plain"].append(plain["stage_seconds"]["verify"])
        seconds["device"].append(with_device["stage_seconds"]["verify"])
    described = with_device["runners"]["device:board"]
    suite.raw["g_verify"] = {"verify_s": seconds, "device": described}
    here, there = median(seconds["plain"]), median(seconds["device"])
    detail = (
        f"verify {there:.2f} s with the device / {here:.2f} s without (medians); the device's call "
        f"{described['call_s']:.2f} s, copy {described['transfer_s']:.2f} s"
    )
    name = f"verify of {VERIFY_SAMPLES + 50}+ samples, with a device / without"
    suite.add("g_verify", name, ratio(there, here), "", detail)


def _devices_setting(device: Any) -> str:
    return "verify.devices=" + yaml.safe_dump([_device_fields(device)], default_flow_style=True).strip()


def _build(suite: Any, recipe: Path, tag: str, settings: list[str]) -> dict[str, Any]:
    from benchmarks.run import ckit_command

    out = suite.fresh(f"{tag}-out")
    command = [*ckit_command(), "build", str(recipe), "--out", str(out), "--quiet"]
    command += [option for setting in settings for option in ("--set", setting)]
    run_process(command, env=environment(CKIT_CACHE_DIR=str(suite.workdir / "g-cache")), ok=(0, 3))
    return json.loads((out / "report.json").read_text())


def _disconnects(suite: Any, device: Any, recipe: Path) -> None:
    """Each trial: a build whose verify stage must run again (its own subset seed), sshd killed after a seeded
    random delay within the build's usual duration."""
    from benchmarks.run import ckit_command

    rng = random.Random(SEED)
    cache = suite.workdir / "g-cache"
    started = time.perf_counter()  # a build like the trials' (its verify stage runs again), to draw kill times in
    _build(suite, recipe, "g-warm", [f"verify.num_samples={VERIFY_SAMPLES - 1 - TRIALS}", _devices_setting(device)])
    duration = time.perf_counter() - started
    outcomes = []
    for trial in range(TRIALS):
        out = Path(tempfile.mkdtemp(prefix="g-trial-", dir=suite.workdir))
        command = [*ckit_command(), "build", str(recipe), "--out", str(out), "--quiet"]
        for setting in (f"verify.num_samples={VERIFY_SAMPLES - 1 - trial}", _devices_setting(device)):
            command += ["--set", setting]
        delay = rng.uniform(0, duration)
        process = subprocess.Popen(
            command, env=environment(CKIT_CACHE_DIR=str(cache)), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        time.sleep(delay)
        device.kill_sessions()
        stdout, stderr = process.communicate(timeout=600)
        device.restart()
        outcomes.append(_outcome(trial, delay, process.returncode, stdout + stderr, out))
    bad = [o for o in outcomes if o["traceback"] or o["partial_reported_complete"]]
    suite.raw["g_disconnect"] = {"build_s": duration, "trials": outcomes}
    lost = sum(o["exit_code"] == 4 for o in outcomes)
    detail = f"{lost} lost (exit 4), {TRIALS - lost} finished before the kill; kills within 0-{duration:.1f} s"
    suite.add("g_disconnect", f"device lost in {TRIALS} builds: tracebacks + partial results", len(bad), "", detail)


def _outcome(trial: int, delay: float, code: int, output: bytes, out: Path) -> dict[str, Any]:
    text = output.decode(errors="replace")
    report = out / "report.json"
    complete = code == 0 and report.exists() and _device_complete(report)
    return {
        "trial": trial,
        "kill_after_s": round(delay, 3),
        "exit_code": code,
        "traceback": "Traceback" in text,
        "error": next((line for line in text.splitlines() if line.startswith("error: ")), ""),
        # lost, yet a report written or success claimed; or success with the device's outputs not all there
        "partial_reported_complete": (code != 0 and report.exists()) or (code == 0 and not complete),
    }


def _device_complete(report_path: Path) -> bool:
    """The device compared and timed: its runner ran every sample or raised (the verify stage keeps no part)."""
    report = json.loads(report_path.read_text())
    pairs = {(c["reference"], c["candidate"]) for c in report["comparisons"]}
    return ("tflite-int8", "device:board") in pairs and "device:board" in report["latency"]
