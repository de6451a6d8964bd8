"""The `ssh_device` fixture itself (tests/ssh_device.py), against real OpenSSH: what the remote runner's tests will
lean on must hold first. A test here that fails says the fixture, not the runner, is broken."""

from __future__ import annotations

import json
import shlex
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.ssh_device import SshDevice

TOOLCHAIN_MODULES = ("compiler_kit", "tensorflow", "ai_edge_litert", "keras", "torch", "onnxruntime", "onnx2tf")


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, **kwargs)


def started(device: SshDevice, *client_options: str) -> tuple[subprocess.Popen[str], int]:
    """A client running `sleep 30` on the device, returned once the remote command has started, with the pid of
    that remote process (the shell prints its pid, then execs sleep in place)."""
    command = device.ssh_command("echo $$; exec sleep 30", extra=client_options)
    client = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert client.stdout is not None
    return client, int(client.stdout.readline())


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_address_and_credentials(ssh_device: SshDevice) -> None:
    assert ssh_device.host == "127.0.0.1"
    assert ssh_device.url() == f"ssh://{ssh_device.user}@127.0.0.1:{ssh_device.port}"
    assert ssh_device.identity.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert ssh_device.known_hosts.read_text().startswith(f"[127.0.0.1]:{ssh_device.port} ssh-ed25519 ")
    assert ssh_device.python.is_absolute() and ssh_device.python.parent.parent.name == ".venv-device"
    assert ssh_device.workdir.is_dir() and not any(ssh_device.workdir.iterdir())


def test_device_python_has_tflite_runtime_and_numpy_1(ssh_device: SshDevice) -> None:
    code = "import tflite_runtime, numpy; print(tflite_runtime.__version__, numpy.__version__)"
    done = run(ssh_device.ssh_command(str(ssh_device.python), "-c", shlex.quote(code)))
    assert done.returncode == 0, done.stderr
    tflite_version, numpy_version = done.stdout.split()
    assert tflite_version == "2.14.0"
    assert numpy_version.startswith("1.")


def test_device_python_has_none_of_the_host_toolchain(ssh_device: SshDevice) -> None:
    """A real device has only the standalone interpreter: a runner that leans on anything else must fail here,
    even run from the device's scratch folder."""
    code = (
        "import importlib.util, json\n"
        "from tflite_runtime.interpreter import Interpreter\n"
        f"print(json.dumps([m for m in {list(TOOLCHAIN_MODULES)!r} if importlib.util.find_spec(m)]))"
    )
    remote = (
        f"cd {shlex.quote(str(ssh_device.workdir))} && {shlex.quote(str(ssh_device.python))} -c {shlex.quote(code)}"
    )
    done = run(ssh_device.ssh_command(remote))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_unknown_host_key_is_refused(ssh_device: SshDevice) -> None:
    done = run(ssh_device.ssh_command("true", known_hosts=ssh_device.known_hosts_without_key))
    assert done.returncode == 255
    assert "Host key verification failed" in done.stderr
    assert ssh_device.known_hosts_without_key.read_text() == ""  # StrictHostKeyChecking=yes never adds it


def test_changed_host_key_is_refused(ssh_device: SshDevice) -> None:
    done = run(ssh_device.ssh_command("true", known_hosts=ssh_device.known_hosts_wrong_key))
    assert done.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in done.stderr
    assert "Host key verification failed" in done.stderr


def test_only_the_throwaway_key_logs_in(ssh_device: SshDevice, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    command = ssh_device.ssh_command("true")
    command[command.index(str(ssh_device.identity))] = str(other)
    done = run(command)
    assert done.returncode == 255
    assert "Permission denied (publickey)" in done.stderr


def test_files_copy_to_the_workdir_with_scp(ssh_device: SshDevice, tmp_path: Path) -> None:
    """scp speaks SFTP since OpenSSH 9.0: the server's sftp subsystem is configured."""
    local = tmp_path / "payload.bin"
    local.write_bytes(bytes(range(256)) * 64)
    options = [arg if arg != "-p" else "-P" for arg in ssh_device.client_args()]
    done = run(["scp", "-q", *options, str(local), f"{ssh_device.destination()}:{ssh_device.workdir}/payload.bin"])
    assert done.returncode == 0, done.stderr
    assert (ssh_device.workdir / "payload.bin").read_bytes() == local.read_bytes()


def test_kill_sessions_drops_a_running_client_and_restart_serves_again(ssh_device: SshDevice) -> None:
    client, remote_pid = started(ssh_device)
    try:
        start = time.monotonic()
        ssh_device.kill_sessions()
        assert client.wait(timeout=5) == 255
        elapsed = time.monotonic() - start
        assert gone(remote_pid)  # the device's command died with it, as on a lost device
        assert not ssh_device.alive()
        refused = run(ssh_device.ssh_command("true"))
        assert refused.returncode == 255
        assert "Connection refused" in refused.stderr
    finally:
        client.kill()
        client.communicate()
        ssh_device.restart()
    print(f"client dropped {elapsed:.3f} s after kill_sessions()")
    assert run(ssh_device.ssh_command("true")).returncode == 0


def test_restart_keeps_port_and_host_key(ssh_device: SshDevice) -> None:
    port, known = ssh_device.port, ssh_device.known_hosts.read_text()
    ssh_device.restart()  # also while running: it kills first
    assert ssh_device.alive() and ssh_device.port == port
    assert ssh_device.known_hosts.read_text() == known
    done = run(ssh_device.ssh_command("echo", "back"))  # strict host-key checking against the same file
    assert (done.returncode, done.stdout) == (0, "back\n"), done.stderr


def test_a_frozen_device_is_noticed_only_by_keepalives(ssh_device: SshDevice) -> None:
    """freeze(): the TCP connection stays up and silent, as when a device hangs or its network goes away; ssh's
    ServerAlive probes are what end the client (exit 255, about interval x (count + 1) seconds)."""
    keepalive = ("-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2")
    client, remote_pid = started(ssh_device, *keepalive)
    try:
        start = time.monotonic()
        ssh_device.freeze()
        assert client.wait(timeout=15) == 255
        elapsed = time.monotonic() - start
        _, stderr = client.communicate()
        assert "Timeout, server" in stderr and "not responding" in stderr
    finally:
        client.kill()
        client.communicate()
        ssh_device.restart()
    assert gone(remote_pid)
    print(f"keepalive noticed the frozen device after {elapsed:.1f} s")


def test_round_trip_timing(ssh_device: SshDevice, capsys: pytest.CaptureFixture[str]) -> None:
    """Measured, never asserted: what one `ssh ... true` costs here, with and without multiplexing, for whoever
    designs the runner's protocol (how many round trips a verification may afford)."""

    def timed(command: list[str]) -> float:
        start = time.perf_counter()
        done = run(command)
        assert done.returncode == 0, done.stderr
        return time.perf_counter() - start

    plain = [timed(ssh_device.ssh_command("true")) for _ in range(5)]
    mux = ssh_device.multiplexing_options()
    first = timed(ssh_device.ssh_command("true", extra=tuple(mux)))  # opens the master
    try:
        check = run(["ssh", *ssh_device.client_args(), *mux, "-O", "check", ssh_device.destination()])
        assert check.returncode == 0, check.stderr
        reused = [timed(ssh_device.ssh_command("true", extra=tuple(mux))) for _ in range(5)]
        python = [timed(ssh_device.ssh_command(str(ssh_device.python), "-c", "pass", extra=tuple(mux)))]
        python += [timed(ssh_device.ssh_command(str(ssh_device.python), "-c", "pass", extra=tuple(mux)))]
    finally:
        run(["ssh", *ssh_device.client_args(), *mux, "-O", "exit", ssh_device.destination()])
    with capsys.disabled():
        print(
            f"\nssh true round trip: {statistics.median(plain) * 1000:.0f} ms (median of 5, new connection); "
            f"multiplexed: first {first * 1000:.0f} ms (opens the master), then "
            f"{statistics.median(reused) * 1000:.0f} ms (median of 5); device python -c pass over the master: "
            f"{min(python) * 1000:.0f} ms"
        )


@pytest.mark.slow
def test_the_device_runs_our_int8_model_bit_exact(ssh_device: SshDevice, built, digits_dir: Path) -> None:
    """The session's real digits build, copied to the device and run by tflite-runtime 2.14 (nothing newer):
    every op and op version our converter writes loads there, and with the builtin kernels only (no XNNPACK, whose
    int8 kernels differ between runtime versions by a few steps) the outputs equal the host's LiteRT exactly."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    model = built.build_dir / "model_int8.tflite"
    reference = Interpreter(
        model_path=str(model), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    reference.allocate_tensors()
    (image,), (output,) = reference.get_input_details(), reference.get_output_details()
    scale, zero_point = image["quantization"]
    pixels = np.load(digits_dir / "eval.npz")["x"][:16].astype(np.float32) / 255.0
    samples = np.clip(np.round(pixels / scale + zero_point), -128, 127).astype(np.int8).reshape(-1, *image["shape"])
    expected = []
    for sample in samples:
        reference.set_tensor(image["index"], sample)
        reference.invoke()
        expected.append(reference.get_tensor(output["index"]).tolist())
    np.save(ssh_device.workdir / "samples.npy", samples)  # the device's folder is on this machine
    (ssh_device.workdir / "model_int8.tflite").write_bytes(model.read_bytes())

    script = (
        "import json, sys\n"
        "import numpy as np\n"
        "from tflite_runtime.interpreter import Interpreter, OpResolverType\n"
        "results = {}\n"
        "for resolver in ('BUILTIN_WITHOUT_DEFAULT_DELEGATES', 'AUTO'):\n"
        "    it = Interpreter(model_path='model_int8.tflite', num_threads=1,\n"
        "                     experimental_op_resolver_type=getattr(OpResolverType, resolver))\n"
        "    it.allocate_tensors()\n"
        "    (image,), (output,) = it.get_input_details(), it.get_output_details()\n"
        "    results[resolver] = []\n"
        "    for sample in np.load('samples.npy'):\n"
        "        it.set_tensor(image['index'], sample)\n"
        "        it.invoke()\n"
        "        results[resolver].append(it.get_tensor(output['index']).tolist())\n"
        "print(json.dumps(results))\n"
    )
    remote = f"cd {shlex.quote(str(ssh_device.workdir))} && {shlex.quote(str(ssh_device.python))} -"
    done = run(ssh_device.ssh_command(remote), input=script)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results["BUILTIN_WITHOUT_DEFAULT_DELEGATES"] == expected
    assert np.array(results["AUTO"]).argmax(-1).tolist() == np.array(expected).argmax(-1).tolist()
