"""A fake edge device on this machine, reached over real SSH: the `ssh_device` fixture (a pytest plugin, loaded by
tests/conftest.py).

Why a real sshd rather than a mock: the remote runner's hard parts are the transport's own behaviour (host-key
verification, authentication, a connection that drops mid-run, a server that comes back), and only OpenSSH shows what
OpenSSH does. The fixture starts Debian's /usr/sbin/sshd in the foreground with a throwaway config, host key and user
key, listening on a free loopback port; the "device" runs the commands as the current user, with the device's Python
being .venv-device/ (`make device-venv`: tflite-runtime and numpy only, as on a real board, never compiler_kit).

Without /usr/sbin/sshd, ssh/ssh-keygen or .venv-device/bin/python the fixture skips and says which is missing, so a
developer without root still runs the rest; `make test` (CI) installs them first (`make sshd device-venv`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
SSHD = Path("/usr/sbin/sshd")
DEVICE_PYTHON = REPO / ".venv-device" / "bin" / "python"
HOST = "127.0.0.1"
PRIVSEP_DIR = Path("/run/sshd")  # sshd running as root refuses to start without it (Debian's tmpfiles.d makes it)
READY_TIMEOUT_S = 20.0
START_ATTEMPTS = 5  # a free port found by binding port 0 can be taken before sshd binds it: then another port


def _keygen(path: Path, comment: str) -> str:
    """A new ed25519 key pair at `path` (no passphrase); returns the public key's 'type base64' part."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    kind, key = Path(f"{path}.pub").read_text().split()[:2]
    return f"{kind} {key}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _openssh_version() -> tuple[int, int]:
    """sshd's version: options that newer servers need (PerSourcePenalties) are fatal typos to older ones."""
    done = subprocess.run([str(SSHD), "-V"], capture_output=True, text=True, check=False)
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", done.stdout + done.stderr)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def _tree(root: psutil.Process) -> list[psutil.Process]:
    """`root` and every descendant, each stopped (SIGSTOP) as it is found, until a pass finds no new one: a stopped
    process forks nothing, so none escapes by being reparented before the kill. sshd puts each connection (and
    each session's command) in a session of its own, so a process group or session id would miss them."""
    found: dict[int, psutil.Process] = {}
    pending = [root]
    while pending:
        for process in pending:
            try:
                process.suspend()
                found[process.pid] = process
            except psutil.NoSuchProcess:
                pass
        pending = []
        for process in list(found.values()):
            with contextlib.suppress(psutil.NoSuchProcess):
                pending += [child for child in process.children() if child.pid not in found]
    return list(found.values())


def _wait_dead(processes: list[psutil.Process], timeout_s: float = 10.0) -> None:
    """Until each of `processes` is gone or a zombie: the sessions' processes are reparented to PID 1 when they
    die, and waiting for it to reap them (psutil.wait_procs) takes a second or more in some containers."""
    deadline = time.monotonic() + timeout_s
    for process in processes:
        while time.monotonic() < deadline:
            try:
                if process.status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.01)


PYENV_LOCK = Path.home() / ".pyenv" / "shims" / ".pyenv-shim"


def _clear_stale_pyenv_lock() -> None:
    """This machine's root ~/.bashrc runs `pyenv init`, whose rehash takes the lock file ~/.pyenv/shims/.pyenv-shim;
    a session killed during its login leaves the lock behind, and every later login then waits 60 s for it (seen
    here: the next `ssh ... true` timed out). The lock is stale once no pyenv rehash runs."""
    rehashing = any(
        "rehash" in " ".join(process.info["cmdline"] or [])
        for process in psutil.process_iter(["cmdline"])
        if "pyenv" in " ".join(process.info["cmdline"] or [])
    )
    if not rehashing:
        PYENV_LOCK.unlink(missing_ok=True)


@dataclass
class SshDevice:
    """One fake device: its address, the throwaway credentials a client needs, the device's Python and scratch
    folder, and controls that simulate a device lost mid-run (`kill_sessions`, `freeze`) and back (`restart`)."""

    host: str
    port: int
    user: str
    identity: Path  # the client's private key (ed25519, no passphrase)
    known_hosts: Path  # holds the device's host key for [127.0.0.1]:PORT
    python: Path  # the device's interpreter: absolute .venv-device/bin/python
    workdir: Path  # the device's scratch space (an empty folder)
    known_hosts_without_key: Path  # an empty known_hosts: the device's host is unknown
    known_hosts_wrong_key: Path  # another ed25519 key for [127.0.0.1]:PORT: a changed host key
    control_dir: Path  # a short folder for ControlPath sockets (a Unix socket path is at most 107 bytes)
    log: Path  # sshd's own log (-e): why a connection was refused
    config: Path = field(repr=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def url(self) -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}"

    def destination(self) -> str:
        return f"{self.user}@{self.host}"

    def ssh_options(self) -> list[str]:
        """The `-o` options a client needs here beyond its identity and known_hosts: only the throwaway key is
        offered (not an agent's or ~/.ssh's), and ssh never prompts (a test must fail, not hang)."""
        return ["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]

    def client_args(self, known_hosts: Path | None = None) -> list[str]:
        """Everything between `ssh` and the destination: no user config file (-F none), the identity, strict
        host-key checking against `known_hosts` (the device's own by default), the options and the port."""
        return [
            "-F",
            "none",
            "-i",
            str(self.identity),
            "-o",
            f"UserKnownHostsFile={known_hosts or self.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            *self.ssh_options(),
            "-p",
            str(self.port),
        ]

    def ssh_command(self, *remote: str, known_hosts: Path | None = None, extra: tuple[str, ...] = ()) -> list[str]:
        """A complete `ssh` argv running `remote` on the device. `extra` (more client options, e.g.
        `multiplexing_options()`) comes first: ssh keeps the first value it reads for an option, so these win."""
        return ["ssh", *extra, *self.client_args(known_hosts), self.destination(), "--", *remote]

    def multiplexing_options(self, persist_s: int = 60) -> list[str]:
        """ControlMaster options that work here: the first ssh opens a master that later ones reuse, with its socket
        in the short `control_dir` (%C: a hash of host, port and user)."""
        return [
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={self.control_dir}/%C",
            "-o",
            f"ControlPersist={persist_s}",
        ]

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill_sessions(self) -> None:
        """SIGKILL sshd and every process under it (each connection's sshd, each session's command): a device lost
        mid-run. The kernel closes their sockets, so a connected client sees its connection drop at once (ssh exits
        255). Nothing listens on the port until `restart()`."""
        if self._process is None:
            return
        try:
            processes = _tree(psutil.Process(self._process.pid))
        except psutil.NoSuchProcess:
            processes = []
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
        self._process.wait(timeout=10)  # the listener is ours to reap
        _wait_dead(processes)
        self._process = None
        _clear_stale_pyenv_lock()

    def freeze(self) -> None:
        """SIGSTOP sshd and every session: a device that hangs or a network that goes silent. The connection stays
        open (the kernel still acknowledges packets) but nothing answers, so a client notices only through its own
        timeouts (ServerAliveInterval/ServerAliveCountMax). `thaw()` resumes; `restart()` or `kill_sessions()` end
        it."""
        if self._process is not None:
            _tree(psutil.Process(self._process.pid))

    def thaw(self) -> None:
        if self._process is None:
            return
        for process in _tree(psutil.Process(self._process.pid)):
            with contextlib.suppress(psutil.NoSuchProcess):
                process.resume()

    def restart(self) -> None:
        """sshd back on the same port with the same host key (whatever ran before is killed first), ready for the
        next trial: `known_hosts` and `identity` stay valid."""
        self.kill_sessions()
        self._process = _start_sshd(self.config, self.port, self.log)
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Until a real `ssh ... true` succeeds: the port accepting connections does not yet mean logins work."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if not self.alive():
                raise RuntimeError(f"sshd exited at start: {self.log.read_text()}")
            done = subprocess.run(self.ssh_command("true"), capture_output=True, text=True, timeout=READY_TIMEOUT_S)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"ssh to the test sshd fails: {done.stderr}\nsshd log:\n{self.log.read_text()}")
            time.sleep(0.1)


def _write_config(config: Path, port: int, folder: Path, version: tuple[int, int]) -> None:
    lines = [
        f"Port {port}",
        f"ListenAddress {HOST}",
        f"HostKey {folder / 'host_key'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}",
        f"PidFile {folder / 'sshd.pid'}",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        "StrictModes no",  # the tmp folders' modes are not sshd's business here
        "PrintMotd no",
        "PrintLastLog no",
        "Subsystem sftp internal-sftp",  # scp (SFTP protocol since OpenSSH 9.0) and sftp
    ]
    if version >= (9, 8):  # else a client whose sessions keep getting killed is refused for a while
        lines.append("PerSourcePenalties no")
    config.write_text("\n".join(lines) + "\n")


def _start_sshd(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """sshd in the foreground (-D) logging to `log` (-e), once it accepts TCP connections on `port`; raises
    OSError when it exits first (the port taken, a bad config)."""
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            start_new_session=True,  # pytest's Ctrl-C is not sshd's
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise OSError(f"sshd exited ({process.returncode}) on port {port}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise OSError(f"sshd accepts no connection on port {port} after {READY_TIMEOUT_S} s: {log.read_text()[-2000:]}")


def missing() -> list[str]:
    missing = [str(SSHD)] if not os.access(SSHD, os.X_OK) else []
    missing += [tool for tool in ("ssh", "ssh-keygen") if shutil.which(tool) is None]
    if not os.access(DEVICE_PYTHON, os.X_OK):
        missing.append(str(DEVICE_PYTHON.relative_to(REPO)))
    return missing


def start_device(folder: Path, workdir: Path) -> SshDevice:
    """sshd on a free loopback port with throwaway keys in `folder`, ready for connections (also what
    benchmarks/device.py measures against). Stop it with `kill_sessions()`."""
    if os.geteuid() == 0:
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    host_key = _keygen(folder / "host_key", "ckit-test-device")
    user_key = _keygen(folder / "id_ed25519", "ckit-test-client")
    (folder / "authorized_keys").write_text(user_key + "\n")
    wrong_key = _keygen(folder / "wrong_host_key", "ckit-test-impostor")
    (folder / "known_hosts_without_key").write_text("")
    version = _openssh_version()
    config = folder / "sshd_config"
    log = folder / "sshd.log"
    process, last_error = None, None
    for _ in range(START_ATTEMPTS):
        port = _free_port()
        _write_config(config, port, folder, version)
        try:
            process = _start_sshd(config, port, log)
            break
        except OSError as error:
            last_error = error
    if process is None:
        raise RuntimeError(f"sshd did not start in {START_ATTEMPTS} attempts: {last_error}")
    (folder / "known_hosts").write_text(f"[{HOST}]:{port} {host_key}\n")
    (folder / "known_hosts_wrong_key").write_text(f"[{HOST}]:{port} {wrong_key}\n")
    device = SshDevice(
        host=HOST,
        port=port,
        user=pwd.getpwuid(os.getuid()).pw_name,
        identity=folder / "id_ed25519",
        known_hosts=folder / "known_hosts",
        python=DEVICE_PYTHON,
        workdir=workdir,
        known_hosts_without_key=folder / "known_hosts_without_key",
        known_hosts_wrong_key=folder / "known_hosts_wrong_key",
        control_dir=Path(tempfile.mkdtemp(prefix="ckit-ssh-", dir="/tmp")),
        log=log,
        config=config,
        _process=process,
    )
    try:
        device._wait_ready()
    except BaseException:
        device.kill_sessions()
        raise
    return device


@pytest.fixture(scope="session")
def ssh_device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshDevice]:
    """A running sshd on a loopback port for the whole session, with throwaway keys; stopped (with its sessions) at
    the end. A test that calls `kill_sessions()` or `freeze()` must `restart()` before it ends (in a `finally`)."""
    if absent := missing():
        pytest.skip(f"SSH device tests need {', '.join(absent)}: run `make sshd device-venv`")
    device = start_device(tmp_path_factory.mktemp("ssh_device"), tmp_path_factory.mktemp("ssh_device_workdir"))
    try:
        yield device
    finally:
        device.kill_sessions()  # multiplexing masters lose their connection and exit with it
        shutil.rmtree(device.control_dir, ignore_errors=True)
