"""A child process whose stderr is read as it comes: for progress from work that takes long (onnx2tf's nodes, a
device agent's samples) without waiting for the process to end."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Finished:
    code: int
    stdout: bytes
    expired: bool  # killed after its timeout


def run_streaming(
    argv: list[str],
    *,
    timeout: float,
    on_line: Callable[[str], None],
    stdin: bytes = b"",
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Finished:
    """Run `argv`: `stdin` written and stderr read line by line (each to `on_line`) on threads of their own, stdout
    read here; killed after `timeout` seconds. FileNotFoundError when `argv[0]` does not exist."""
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env
    )
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    feed, errors = process.stdin, process.stderr

    def write() -> None:
        with contextlib.suppress(OSError):  # the far side gone: its exit code and stderr say why
            feed.write(stdin)
            feed.close()

    def read() -> None:
        for line in errors:
            on_line(line.decode(errors="replace"))

    expired = threading.Event()

    def expire() -> None:
        expired.set()
        process.kill()

    killer = threading.Timer(timeout, expire)
    threads = [threading.Thread(target=write, daemon=True), threading.Thread(target=read, daemon=True)]
    for thread in [killer, *threads]:
        thread.start()
    try:
        stdout = process.stdout.read()
        code = process.wait()
    finally:
        killer.cancel()
        for thread in threads:
            thread.join(timeout=10)
    return Finished(code, stdout, expired.is_set())
