"""One call of the device agent (agent.py) over SSH, or in a subprocess for a `local` device.

SSH is the system's OpenSSH client: it already reads the user's ~/.ssh/config (jump hosts, agents) and
known_hosts the way every other tool does. Host keys are checked (`StrictHostKeyChecking=yes`, or `accept-new`
only when the recipe or `--accept-new-host-key` says so: a CHANGED key is refused either way), authentication is
by key only (`BatchMode=yes`: ssh never prompts), connecting gives up after `connect_timeout_sec`, a silent link
after 15 s of keep-alives, and a whole run after `timeout_sec`. The remote command is fixed: the device's Python
(checked against a safe pattern by the recipe) and a constant bootstrap, quoted; the agent's code and the job
travel on stdin, never in a command line.

A result is complete only when the agent's result line says so and every byte it announced arrived; anything less
is `DeviceLostError` (exit 4) naming the device and what it completed.
"""

from __future__ import annotations

import io
import json
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit.device.address import DeviceAddress
from compiler_kit.errors import BadInputError, ToolMissingError
from compiler_kit.processes import run_streaming
from compiler_kit.recipe import Device

AGENT = Path(__file__).with_name("agent.py")
# Reads the agent's length, then the agent, from stdin and runs it as __main__; it runs on Python 3.
BOOTSTRAP = "import sys;n=int(sys.stdin.buffer.readline());exec(compile(sys.stdin.buffer.read(n),'ckit-agent','exec'))"
PROGRESS = "ckit-agent: "
KEEPALIVE_S, KEEPALIVES = 5, 3  # a link silent for 15 s is lost
SSH_FAILED, AGENT_FAILED, NOT_FOUND = 255, 3, 127


class DeviceLostError(ToolMissingError):
    """The device went away (or never answered) before a run was complete: exit 4, as for a missing tool."""


@dataclass(frozen=True)
class ModelJob:
    name: str  # the runner's name
    path: Path
    edgetpu: bool  # run with the Edge TPU delegate


@dataclass(frozen=True)
class ModelRun:
    outputs: dict[str, np.ndarray]  # output tensor name -> raw outputs over the samples, in the model's own types
    first_ms: float
    latency_ms: list[float]


@dataclass(frozen=True)
class DeviceRun:
    versions: dict[str, str]
    models: dict[str, ModelRun]
    transfer_s: float  # from the start of the call until the device had every byte (ssh's connection included)
    wall_s: float


@dataclass
class Progress:
    """What the agent said it completed, read from its progress lines as they arrive: for a live count of samples
    (`on_samples`) and for the message when the device is lost."""

    on_samples: Callable[[str, int], None] = lambda model, done: None
    received_at: float | None = None  # when the device had every byte
    done: dict[str, tuple[int, int]] = field(default_factory=dict)
    timed: set[str] = field(default_factory=set)
    other: list[str] = field(default_factory=list)  # ssh's and native code's lines

    def read(self, line: str) -> None:
        if not line.startswith(PROGRESS):
            self.other.append(line.rstrip())
            return
        event = json.loads(line[len(PROGRESS) :])
        if "received" in event:
            self.received_at = time.perf_counter()
        elif "timed" in event:
            self.timed.add(event["model"])
        else:
            self.done[event["model"]] = (event["done"], event["of"])
            self.on_samples(event["model"], event["done"])

    def completed(self) -> str:
        if self.received_at is None:
            return "nothing: the model and inputs were not all received"
        steps = ["the model and inputs were received"]
        steps += [f"{name} ran {done} of {of} samples" for name, (done, of) in self.done.items()]
        steps += [f"{name}'s timed runs finished" for name in sorted(self.timed)]
        return "; ".join(steps) + "; the results did not arrive complete"


class AgentCall:
    """The agent on one device: `probe()` its runtime, `run()` models on inputs."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.address = DeviceAddress.parse(device.url)
        self.name = device.runner_name

    def argv(self) -> list[str]:
        remote = [self.device.python, "-c", BOOTSTRAP]
        if self.address.scheme == "local":
            return remote
        return ["ssh", *self.ssh_options(), "--", self.address.destination, shlex.join(remote)]

    def ssh_options(self) -> list[str]:
        device = self.device
        host_keys = "accept-new" if device.accept_new_host_key else "yes"
        options = [
            *("-o", "BatchMode=yes"),
            *("-o", f"StrictHostKeyChecking={host_keys}"),
            *("-o", f"ConnectTimeout={device.connect_timeout_sec}"),
            *("-o", f"ServerAliveInterval={KEEPALIVE_S}"),
            *("-o", f"ServerAliveCountMax={KEEPALIVES}"),
            *("-o", "LogLevel=ERROR"),  # no "Warning: Permanently added ..." among the agent's lines
        ]
        if self.address.port is not None:
            options += ["-p", str(self.address.port)]
        if device.identity is not None:
            options += ["-i", str(device.identity), "-o", "IdentitiesOnly=yes"]
        if device.known_hosts is not None:
            options += ["-o", f"UserKnownHostsFile={_config_value(device.known_hosts)}"]
        return options

    def probe(self) -> dict[str, Any]:
        """The device's runtime versions and whether an Edge TPU answers there."""
        job = {"mode": "probe", "edgetpu_device": self.device.edgetpu_device}
        result, _ = self._call(job, [], Progress())
        return result

    def run(
        self,
        models: Sequence[ModelJob],
        inputs: list[np.ndarray],
        *,
        threads: int,
        warmup: int,
        runs: int,
        on_samples: Callable[[str, int], None] = lambda model, done: None,
    ) -> DeviceRun:
        """Every model on every input sample, then its timed runs; `on_samples(model, done)` as the device counts."""
        buffer = io.BytesIO()
        np.savez(buffer, **{f"i{k}": array for k, array in enumerate(inputs)})
        contents = [job.path.read_bytes() for job in models]
        job = {
            "mode": "run",
            "models": [
                {"name": m.name, "size": len(c), "edgetpu": m.edgetpu} for m, c in zip(models, contents, strict=True)
            ],
            "inputs_size": buffer.tell(),
            "threads": threads,
            "warmup": warmup,
            "runs": runs,
            "edgetpu_device": self.device.edgetpu_device,
        }
        started, progress = time.perf_counter(), Progress(on_samples)
        result, payload = self._call(job, [*contents, buffer.getvalue()], progress)
        wall_s = time.perf_counter() - started
        transfer_s = (progress.received_at or started) - started
        return DeviceRun(result["versions"], _model_runs(result, payload), transfer_s, wall_s)

    def _call(self, job: dict[str, Any], blobs: list[bytes], progress: Progress) -> tuple[dict[str, Any], bytes]:
        agent = AGENT.read_bytes()
        stdin = b"".join([b"%d\n" % len(agent), agent, json.dumps(job).encode() + b"\n", *blobs])
        timeout = self.device.connect_timeout_sec + self.device.timeout_sec
        try:
            done = run_streaming(self.argv(), stdin=stdin, timeout=timeout, on_line=progress.read)
        except FileNotFoundError as exc:  # no ssh client here, or a local device's Python is missing
            raise ToolMissingError(f"{self.name}: cannot start {exc.filename}: {exc.strerror}") from None
        if done.expired:
            raise DeviceLostError(
                f"{self.name} ({self.device.url}) did not finish within {timeout} s; completed: {progress.completed()}"
            )
        return self._result(done.code, done.stdout, progress)

    def _result(self, code: int, stdout: bytes, progress: Progress) -> tuple[dict[str, Any], bytes]:
        head, _, payload = stdout.partition(b"\n")
        try:
            result = json.loads(head)
        except ValueError:
            raise self._failure(code, progress) from None
        if not result.get("ok"):
            error = " ".join(str(result.get("error")).split())  # native messages end lines anywhere
            raise BadInputError(
                f"{self.name} cannot run the job: {error} (device runtime: {describe_runtime(result.get('versions'))})",
                fix="install numpy and tflite-runtime (or ai-edge-litert) on the device, a version that knows the "
                "model's ops; for the Edge TPU, Coral's libedgetpu1-std",
            )
        if len(payload) != result.get("size", 0):
            raise DeviceLostError(
                f"{self.name} ({self.device.url}) was lost: {len(payload)} of {result.get('size')} result bytes "
                f"arrived; completed: {progress.completed()}"
            )
        return result, payload

    def _failure(self, code: int, progress: Progress) -> Exception:
        """No result line: why, from ssh's own words (its exit code 255) or the shell's (127)."""
        said = " / ".join(line for line in progress.other[-3:] if line.strip()) or f"exit code {code}"
        where = f"{self.name} ({self.device.url})"
        if "Host key verification failed" in said or "REMOTE HOST IDENTIFICATION HAS CHANGED" in said:
            return BadInputError(
                f"{where}: the host key is not trusted ({said})",
                fix="check the host's key fingerprint, then add it (ssh-keyscan -p PORT HOST >> ~/.ssh/known_hosts) "
                "or trust a NEW host on first use with --accept-new-host-key; a changed key is never accepted",
            )
        if "Permission denied" in said:
            return BadInputError(
                f"{where}: the device refused our key ({said})",
                fix="set the device's `identity` to a private key whose public key is in the device user's "
                "~/.ssh/authorized_keys (ckit uses keys only, never passwords)",
            )
        if code == NOT_FOUND:
            return ToolMissingError(
                f"{where}: the device has no {self.device.python} ({said}): set the device's `python`"
            )
        if code == SSH_FAILED and progress.received_at is None:
            return DeviceLostError(f"{where} cannot be reached: {said}")
        return DeviceLostError(f"{where} was lost ({said}); completed: {progress.completed()}")


def describe_runtime(versions: dict[str, str] | None) -> str:
    if not versions:
        return "unknown: the agent could not import numpy or an interpreter"
    runtime = f"{versions.get('runtime', 'no interpreter')} {versions.get('runtime_version', '')}".strip()
    return f"{runtime}, numpy {versions.get('numpy')}, Python {versions.get('python')} on {versions.get('machine')}"


def _config_value(path: Path) -> str:
    """A path as one ssh_config value: quoted (a space would separate two files) and with `%` escaped."""
    return '"' + str(path).replace("%", "%%") + '"'


def _model_runs(result: dict[str, Any], payload: bytes) -> dict[str, ModelRun]:
    with np.load(io.BytesIO(payload)) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return {
        name: ModelRun(
            {tensor: arrays[f"{name}#{k}"] for k, tensor in enumerate(run["outputs"])},
            float(run["first_ms"]),
            [float(t) for t in run["latency_ms"]],
        )
        for name, run in result["models"].items()
    }
