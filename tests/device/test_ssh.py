"""The device agent over real SSH: Debian's sshd on a loopback port (tests/ssh_device.py) playing a board whose
Python has only tflite-runtime 2.14.0 and numpy 1.x. Host keys, keys, unreachable and lost devices, and a build and
`ckit run` with the device in the chain."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from compiler_kit.cli import app
from compiler_kit.device.session import AgentCall, DeviceLostError, ModelJob
from compiler_kit.errors import BadInputError
from compiler_kit.recipe import Device
from compiler_kit.runners.litert import LiteRtRunner
from tests.conftest import WriteRecipe
from tests.ssh_device import SshDevice, _keygen


def device_of(ssh: SshDevice, **settings: object) -> Device:
    fields = {"identity": ssh.identity, "known_hosts": ssh.known_hosts, "python": str(ssh.python), **settings}
    return Device(url=ssh.url(), name="board", **fields)


def test_probe_over_ssh(ssh_device: SshDevice) -> None:
    probe = AgentCall(device_of(ssh_device)).probe()
    assert probe["versions"]["runtime_version"] == "2.14.0"


def test_an_unknown_host_is_refused_unless_trusted_on_first_use(ssh_device: SshDevice, tmp_path: Path) -> None:
    unknown = tmp_path / "known_hosts"
    shutil.copy(ssh_device.known_hosts_without_key, unknown)
    with pytest.raises(BadInputError, match="host key is not trusted") as refused:
        AgentCall(device_of(ssh_device, known_hosts=unknown)).probe()
    assert "--accept-new-host-key" in str(refused.value)
    AgentCall(device_of(ssh_device, known_hosts=unknown, accept_new_host_key=True)).probe()
    assert "ssh-ed25519" in unknown.read_text()  # remembered (hashed, as Debian's ssh_config says)...
    AgentCall(device_of(ssh_device, known_hosts=unknown)).probe()  # ...so a strict call now passes


def test_a_changed_host_key_is_refused_even_when_trusting_new_ones(ssh_device: SshDevice, tmp_path: Path) -> None:
    changed = tmp_path / "known_hosts"
    shutil.copy(ssh_device.known_hosts_wrong_key, changed)
    with pytest.raises(BadInputError, match="host key is not trusted"):
        AgentCall(device_of(ssh_device, known_hosts=changed, accept_new_host_key=True)).probe()


def test_a_key_the_device_does_not_know_is_refused(ssh_device: SshDevice, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    _keygen(stranger, "not authorized")
    with pytest.raises(BadInputError, match="refused our key"):
        AgentCall(device_of(ssh_device, identity=stranger)).probe()


def test_a_device_nobody_answers_at_cannot_be_reached(ssh_device: SshDevice) -> None:
    closed = Device(url="ssh://root@127.0.0.1:1", python=str(ssh_device.python), connect_timeout_sec=2)
    with pytest.raises(DeviceLostError, match=r"device:127\.0\.0\.1 \(ssh://root@127\.0\.0\.1:1\) cannot be reached"):
        AgentCall(closed).probe()


@pytest.mark.slow
def test_a_device_lost_mid_run_says_what_it_completed(ssh_device: SshDevice, built) -> None:
    """sshd and its sessions killed while the device runs: exit 4's error, the work done named, no result."""
    model = built.build_dir / "model_int8.tflite"
    here = LiteRtRunner("here", model, 1)
    here.prepare()
    inputs = here.encode({"x": np.zeros((20, *here.inputs[0]["shape"][1:]), np.float32)})
    call = AgentCall(device_of(ssh_device))
    killer = threading.Timer(2.0, ssh_device.kill_sessions)
    killer.start()
    try:
        with pytest.raises(DeviceLostError, match=r"device:board \(ssh://.*\) was lost .*completed: ") as lost:
            call.run([ModelJob("device:board", model, False)], inputs, threads=1, warmup=0, runs=10_000_000)
    finally:
        killer.join()
        ssh_device.restart()
    assert "were received" in str(lost.value) and "timed runs finished" not in str(lost.value)


def ckit(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.mark.slow
def test_build_with_a_device_over_ssh(ssh_device: SshDevice, write_recipe: WriteRecipe, tmp_path: Path) -> None:
    device = {
        "url": ssh_device.url(),
        "name": "board",
        "python": str(ssh_device.python),
        "identity": str(ssh_device.identity),
        "known_hosts": str(ssh_device.known_hosts),
    }

    def add_device(recipe: dict) -> None:
        recipe["verify"]["devices"] = [device]
        recipe["gates"]["max_latency_p50_ms"] = {"tflite-int8": 5.0}

    result = ckit("build", str(write_recipe(add_device)))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "build" / "report.json").read_text())
    described = report["runners"]["device:board"]
    assert described["device_versions"]["runtime_version"] == "2.14.0" and described["transfer_s"] > 0
    pairs = {(c["reference"], c["candidate"]): c["metrics"] for c in report["comparisons"]}
    drift = pairs[("tflite-int8", "device:board")]  # LiteRT here against tflite-runtime there: measured
    assert drift["top1_agreement"] >= 0.95 and drift["snr_db"] > 25
    assert ("source", "device:board") in pairs
    latency = report["latency"]["device:board"]
    assert latency["runs"] == 20 and latency["p50_ms"] > 0
    assert "device:board" in (tmp_path / "build" / "report.md").read_text()


@pytest.mark.slow
def test_build_with_an_unreachable_device_exits_4(write_recipe: WriteRecipe) -> None:
    result = ckit("build", str(write_recipe()), "--device", "ssh://root@127.0.0.1:1")
    assert result.exit_code == 4, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: device:127.0.0.1 (ssh://root@127.0.0.1:1) cannot be reached: "
        "ssh: connect to host 127.0.0.1 port 1: Connection refused"
    ]


def test_build_refuses_a_device_address_that_is_not_one(write_recipe: WriteRecipe) -> None:
    result = ckit("build", str(write_recipe()), "--device", "ssh://-oProxyCommand=sh")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "error: --device: 'ssh://-oProxyCommand=sh': '-oproxycommand=sh' is not a host name" in result.output


@pytest.mark.slow
def test_ckit_run_here_and_on_the_device(ssh_device: SshDevice, built, tmp_path: Path) -> None:
    """Digits written as PNG files: the same top-1 here and on the device, and both say how fast."""
    from PIL import Image

    samples = np.load(_eval_npz(built))
    images = []
    for i in range(6):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(samples["x"][i].squeeze().astype(np.uint8)).save(path)
        images.append(str(path))
    here = ckit("run", str(built.build_dir), *images, "-k", "1")
    assert here.exit_code == 0, here.output
    remote_options = ["--python", str(ssh_device.python), "--identity", str(ssh_device.identity)]
    remote_options += ["--known-hosts", str(ssh_device.known_hosts)]
    there = ckit("run", str(built.build_dir), *images, "-k", "1", "--device", ssh_device.url(), *remote_options)
    assert there.exit_code == 0, there.output
    top1 = [_top1(output, len(images)) for output in (here.output, there.output)]
    assert top1[0] == top1[1] and sum(int(t) == int(y) for t, y in zip(top1[0], samples["y"][:6], strict=True)) >= 5
    assert "tflite-int8 (ai-edge-litert" in here.output and "device:127.0.0.1 (tflite-runtime 2.14.0)" in there.output
    assert "frames/s" in here.output and "frames/s" in there.output


def _eval_npz(built) -> Path:
    return Path(json.loads((built.build_dir / "report.json").read_text())["inputs"]["datasets"]["verify"]["path"])


def _top1(output: str, count: int) -> list[str]:
    rows = [line.split() for line in output.splitlines() if line.startswith("digit")]
    return [row[1] for row in rows[:count]]


def test_ckit_run_refuses_a_compiled_model(tmp_path: Path) -> None:
    compiled = tmp_path / "model_edgetpu.tflite"
    compiled.write_bytes(b"TFL3")
    result = ckit("run", str(compiled), str(tmp_path / "x.png"))
    assert result.exit_code == 2 and "give the build folder, or the int8 model" in result.output


@pytest.mark.slow
def test_a_required_edgetpu_the_device_cannot_give_exits_4(device_python: Path, write_recipe: WriteRecipe) -> None:
    """No compiled model here (no edgetpu_compiler) and no libedgetpu on the device: `edgetpu: required` stops."""

    def require_edgetpu(recipe: dict) -> None:
        recipe["verify"]["devices"] = [{"url": "local", "python": str(device_python), "edgetpu": "required"}]

    result = ckit("build", str(write_recipe(require_edgetpu)))
    assert result.exit_code == 4, result.output
    assert "error: device:local cannot run the Edge TPU model: the build has no compiled model" in result.output


@pytest.mark.slow
def test_a_coral_era_runtime_that_computes_otherwise_fails_the_gates(
    legacy_device_python: Path, write_recipe: WriteRecipe, tmp_path: Path
) -> None:
    """Python 3.7 and tflite-runtime 2.7.0, as Mendel-era boards have: the agent runs there. That runtime applies one
    scale to FULLY_CONNECTED weights quantized per channel (measured: the digits CNN scores 9.7% there, 97.5% here),
    so the device's drift gates fail and a finding names the runtime; per-tensor weights run bit-exact on it."""

    def add_device(recipe: dict) -> None:
        recipe["verify"]["devices"] = [{"url": "local", "python": str(legacy_device_python), "name": "mendel"}]

    recipe = write_recipe(add_device)
    failed = ckit("build", str(recipe))
    assert failed.exit_code == 3, failed.output
    assert "gate failed: min_snr_db[device:mendel]" in failed.output
    assert "device:mendel runs the same int8 file differently from tflite-int8" in failed.output
    report = json.loads((tmp_path / "build" / "report.json").read_text())
    assert report["runners"]["device:mendel"]["device_versions"]["python"].startswith("3.7.")
    fixed = ckit("build", str(recipe), "--set", "quantization.granularity=per-tensor")
    assert fixed.exit_code == 0, fixed.output
    report = json.loads((tmp_path / "build" / "report.json").read_text())
    pairs = {(c["reference"], c["candidate"]): c["metrics"] for c in report["comparisons"]}
    assert pairs[("tflite-int8", "device:mendel")]["max_abs_error"] == 0  # bit-exact


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--std", "0"], "error: --std: Input should be greater than or equal to"),
        (
            ["--device", "ssh://-oProxyCommand=sh"],
            "error: --device: 'ssh://-oProxyCommand=sh': '-oproxycommand=sh' is not a host",
        ),
        (["--device", "ssh://pi@coral", "--python", "python3; rm -rf ~"], "error: --python: String should match"),
    ],
)
def test_ckit_run_refuses_bad_options_before_any_work(tmp_path: Path, options: list[str], says: str) -> None:
    model = tmp_path / "model_int8.tflite"
    model.write_bytes(b"never read: the options are refused first")
    result = ckit("run", str(model), str(tmp_path / "x.png"), *options)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(says), result.output
