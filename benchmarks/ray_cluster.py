"""A throwaway local Ray cluster (bench part f, tests/test_batch.py): `ray start --head` on a free loopback port with
two CPUs and a folder of its own, and stopped by killing its own processes only (`ray stop --force` kills every Ray
cluster on the machine, another user's tests' too)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LocalCluster:
    port: int  # the GCS's
    temp: Path  # Ray's --temp-dir: every file of the cluster, and named in its processes' arguments

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_command(self, ray: Path) -> list[str]:
        flags = ["--node-ip-address=127.0.0.1", f"--port={self.port}", "--num-cpus=2", f"--temp-dir={self.temp}"]
        return [str(ray), "start", "--head", *flags, "--disable-usage-stats", "--include-dashboard=false"]

    def stop(self) -> None:
        """SIGKILL, as `ray stop --force` sends, to the processes whose arguments name this cluster's folder or its
        GCS port (the client server names only the port), and to their descendants (the workers rename
        themselves)."""
        table = process_table()
        ours = [
            pid
            for pid, (_, args) in table.items()
            if pid != os.getpid() and any(str(self.temp) in arg or arg.endswith(f":{self.port}") for arg in args)
        ]
        for pid in ours:  # grows while it is walked: breadth first
            ours += [child for child, (parent, _) in table.items() if parent == pid and child not in ours]
        for pid in ours:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.temp, ignore_errors=True)


def new_cluster() -> LocalCluster:
    """A free loopback port and a short folder (Ray's socket paths under it must fit in 107 bytes)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return LocalCluster(port, Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp")))


def process_table() -> dict[int, tuple[int, list[str]]]:
    """pid -> (parent pid, arguments) of every process (Linux /proc)."""
    table = {}
    for folder in Path("/proc").iterdir():
        if folder.name.isdigit():
            with contextlib.suppress(OSError):  # ended meanwhile
                parent = int((folder / "stat").read_text().rpartition(")")[2].split()[1])
                args = (folder / "cmdline").read_bytes().decode(errors="replace").split("\0")
                table[int(folder.name)] = (parent, args)
    return table
