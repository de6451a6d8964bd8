"""The device agent and its call: the agent's own syntax, the ssh command line, and real runs of the agent with the
device's runtime (tflite-runtime 2.14.0 in its own virtual environment) as a `local` device."""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import numpy as np
import pytest

from compiler_kit.device.session import AGENT, BOOTSTRAP, AgentCall, DeviceLostError, ModelJob
from compiler_kit.errors import BadInputError, ToolMissingError
from compiler_kit.recipe import Device
from compiler_kit.runners.litert import LiteRtRunner


def test_agent_keeps_to_python_36_syntax() -> None:
    """Boards ship old Pythons (Mendel's 3.7): the agent must parse as 3.6 and import nothing of ckit."""
    source = AGENT.read_text()
    tree = ast.parse(source, feature_version=(3, 6))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name.startswith("compiler_kit") for name in imported) and "__future__" not in imported


def test_ssh_command_checks_host_keys_and_quotes_only_checked_values(tmp_path: Path) -> None:
    known = tmp_path / "my hosts%"
    device = Device(url="ssh://pi@coral.local:2222", identity=tmp_path / "key", known_hosts=known)
    argv = AgentCall(device).argv()
    options = argv[: argv.index("--")]
    assert "StrictHostKeyChecking=yes" in options and "BatchMode=yes" in options
    assert options[options.index("-p") + 1] == "2222"
    assert f'UserKnownHostsFile="{tmp_path}/my hosts%%"' in options  # one value: quoted, % escaped
    assert argv[argv.index("--") + 1 :] == ["pi@coral.local", shlex.join(["python3", "-c", BOOTSTRAP])]
    trusting = Device(url="ssh://pi@coral.local", accept_new_host_key=True)
    assert "StrictHostKeyChecking=accept-new" in AgentCall(trusting).argv()


def test_probe_reports_the_device_runtime(device_python: Path) -> None:
    probe = AgentCall(Device(url="local", python=str(device_python))).probe()
    versions = probe["versions"]
    assert (versions["runtime"], versions["runtime_version"]) == ("tflite-runtime", "2.14.0")
    assert versions["numpy"].startswith("1.")
    assert probe["edgetpu"]["available"] is False and "libedgetpu" in probe["edgetpu"]["reason"]


def test_a_model_the_device_cannot_read_is_bad_input(device_python: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer" * 8)
    call = AgentCall(Device(url="local", python=str(device_python), name="board"))
    inputs = [np.zeros((2, 4), np.int8)]
    says = r"device:board cannot run the job: ValueError: .*TFL3.* \(device runtime: tflite-runtime 2\.14\.0, numpy 1"
    with pytest.raises(BadInputError, match=says):
        call.run([ModelJob("device:board", junk, False)], inputs, threads=1, warmup=0, runs=1)


def test_a_missing_device_python_is_a_missing_tool(tmp_path: Path) -> None:
    call = AgentCall(Device(url="local", python=str(tmp_path / "python3")))
    with pytest.raises(ToolMissingError, match="cannot start"):
        call.probe()


def test_a_device_that_hangs_is_lost_after_its_timeout(tmp_path: Path) -> None:
    """A test double for a hung board: a 'python' that reads the job and never answers."""
    hung = tmp_path / "python"
    hung.write_text("#!/bin/sh\ncat > /dev/null\nsleep 30\n")
    hung.chmod(0o755)
    call = AgentCall(Device(url="local", python=str(hung), connect_timeout_sec=1, timeout_sec=1))
    with pytest.raises(DeviceLostError, match=r"did not finish within 2 s; completed: nothing"):
        call.probe()


@pytest.mark.slow
def test_the_device_runs_every_sample_and_times_its_runs(device_python: Path, built) -> None:
    """The int8 model through tflite-runtime 2.14 on the device against LiteRT here: same shapes, outputs close
    (measured, not assumed equal: the two runtimes' int8 kernels differ), timed runs as asked."""
    model = built.build_dir / "model_int8.tflite"
    here = LiteRtRunner("here", model, 1)
    here.prepare()
    rng = np.random.default_rng(0)
    samples = rng.uniform(0, 1, size=(50, *here.inputs[0]["shape"][1:])).astype(np.float32)
    staged = here.encode({"x": samples})
    run = AgentCall(Device(url="local", python=str(device_python))).run(
        [ModelJob("device:local", model, False)], staged, threads=1, warmup=2, runs=7
    )
    result = run.models["device:local"]
    assert len(result.latency_ms) == 7 and all(t > 0 for t in result.latency_ms) and result.first_ms > 0
    [name] = here.output_tensor_names
    remote = here.decode([result.outputs[name]])[0]
    local = np.concatenate([next(iter(here.infer({"x": samples[i : i + 1]}).values())) for i in range(50)])
    assert remote.shape == local.shape
    steps = np.abs(remote - local) / here.outputs[0]["quantization"][0]
    assert np.median(steps) <= 1  # at most an int8 step apart on most values
    assert (remote.argmax(1) == local.argmax(1)).mean() >= 0.9
    assert run.versions["runtime_version"] == "2.14.0" and 0 <= run.transfer_s <= run.wall_s
