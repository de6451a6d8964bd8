"""The Edge TPU compiler adapter: find `edgetpu_compiler`, run it exactly as documented, and judge its result.

The compiler exists only for x86-64 Linux (Coral's apt repository). It is looked up in this order: a path the
recipe or command line configures, the CKIT_EDGETPU_COMPILER environment variable, then PATH. It runs with an
argument list (never a shell) in its own process group, so a timeout kills it and anything it started. A
compilation counts only when the exit code is 0 AND the output model exists AND it has at least one Edge TPU
subgraph (a model with nothing mapped still exits 0). stdout and the .log are kept as build artifacts.

Its output streams to a file as it comes, never held in memory: of a flood only the head and the tail (where the
summary and the verdict are) are kept, so neither memory nor the disk fills and the verdict can still be read. The
compiled models are the files it wrote in the output folder itself: a link leading out of it is not one.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from compiler_kit.edgetpu.log_parser import (
    HEAD_BYTES,
    TAIL_BYTES,
    CompilerOutput,
    omission_note,
    parse_compiler_output,
    read_head_and_tail,
)
from compiler_kit.errors import BadInputError

ENV_VAR = "CKIT_EDGETPU_COMPILER"
EXECUTABLE = "edgetpu_compiler"
VERSION_TIMEOUT_S = 30
STDOUT_FILE = "edgetpu_compiler.stdout"


@dataclass(frozen=True)
class CompileOptions:
    """The compiler's command-line options that a recipe may set (FACTS.md, compiler 16.0)."""

    timeout_sec: int = 180
    min_runtime_version: int | None = None
    num_segments: int | None = None
    search_delegate: bool = False
    delegate_search_step: int | None = None
    intermediate_tensors: tuple[str, ...] = ()

    def arguments(self) -> list[str]:
        args = ["--show_operations", "--timeout_sec", str(self.timeout_sec)]
        if self.min_runtime_version is not None:
            args += ["--min_runtime_version", str(self.min_runtime_version)]
        if self.num_segments is not None:
            args += ["--num_segments", str(self.num_segments)]
        if self.search_delegate:
            args.append("--search_delegate")
        if self.delegate_search_step is not None:
            args += ["--delegate_search_step", str(self.delegate_search_step)]
        if self.intermediate_tensors:
            args += ["--intermediate_tensors", ",".join(self.intermediate_tensors)]
        return args


@dataclass
class CompileResult:
    """What one compiler run produced; `problem` is None only for a usable compiled model."""

    output: CompilerOutput
    exit_code: int | None
    compiled_models: list[Path]  # one, or one per segment with --num_segments
    stdout_path: Path
    log_paths: list[Path]
    problem: str | None

    @property
    def succeeded(self) -> bool:
        return self.problem is None


def find_compiler(configured: Path | None) -> Path | None:
    """The compiler to run: the configured path (it must exist), else $CKIT_EDGETPU_COMPILER, else PATH."""
    if configured is not None:
        if not (configured.is_file() and os.access(configured, os.X_OK)):
            raise BadInputError(
                "the configured Edge TPU compiler is not an executable file",
                path=configured,
                fix="fix edgetpu.compiler in the recipe (or --compiler), or remove it to search PATH",
            )
        return configured
    if from_env := os.environ.get(ENV_VAR):
        return find_compiler(Path(from_env))
    found = shutil.which(EXECUTABLE)
    return Path(found) if found else None


def compiler_version(executable: Path) -> str | None:
    """The version the compiler reports (`Edge TPU Compiler version X`), or None if it does not say."""
    with tempfile.TemporaryDirectory(prefix="ckit-compiler-version-") as folder:
        output = Path(folder) / "version.txt"
        try:
            _run_in_own_group([str(executable), "--version"], VERSION_TIMEOUT_S, output)
        except OSError:  # not executable after all, or not a program this machine runs
            return None
        text = read_head_and_tail(output).decode(errors="replace")
    found = re.search(r"Edge TPU Compiler version (\S+)", text)
    return found.group(1) if found else None


class EdgeTpuCompiler:
    def __init__(self, executable: Path, grace_s: float = 30.0) -> None:
        self.executable = executable
        self.grace_s = grace_s  # beyond the compiler's own --timeout_sec, before ckit kills it

    def compile(self, model: Path, out_dir: Path, options: CompileOptions) -> CompileResult:
        command = [str(self.executable), "--out_dir", str(out_dir), *options.arguments(), str(model)]
        stdout_path = out_dir / STDOUT_FILE
        exit_code = _run_in_own_group(command, options.timeout_sec + self.grace_s, stdout_path)
        # NAME_edgetpu.{tflite,log}, or NAME_segment_K_of_N_edgetpu.{tflite,log} with --num_segments
        logs = _files_inside(out_dir, f"{model.stem}*_edgetpu.log")
        output = parse_compiler_output(*(read_head_and_tail(p).decode(errors="replace") for p in [stdout_path, *logs]))
        compiled = _files_inside(out_dir, f"{model.stem}*_edgetpu.tflite")
        expected = (
            f"{model.stem}_edgetpu.tflite" if options.num_segments is None else f"{options.num_segments} segments"
        )
        problem = _problem(exit_code, compiled, expected, output, options.timeout_sec + self.grace_s)
        return CompileResult(output, exit_code, compiled, stdout_path, logs, problem)


def _files_inside(folder: Path, pattern: str) -> list[Path]:
    """Regular files matching `pattern` that really are in `folder`: a symbolic link leading out is not taken."""
    root = folder.resolve()
    return sorted(path for path in folder.glob(pattern) if path.is_file() and path.resolve().parent == root)


def _run_in_own_group(command: list[str], timeout: float, output: Path) -> int | None:
    """Run to completion or kill the whole process group at the timeout (exit code None); stdout and stderr, merged,
    stream into `output`, capped by `_copy_head_and_tail`."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    assert process.stdout is not None
    with output.open("wb") as sink:
        copier = threading.Thread(target=_copy_head_and_tail, args=(process.stdout, sink), daemon=True)
        copier.start()
        try:
            exit_code: int | None = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            exit_code = None
        # Also ends what the compiler left running: its processes would hold the pipe open after it exits.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        copier.join()
        process.stdout.close()
        if exit_code is None:
            sink.write(f"\n[ckit] killed after {timeout:.0f} s\n".encode())
    return exit_code


def _copy_head_and_tail(source: io.BufferedIOBase, sink: IO[bytes]) -> None:
    """Copy `source` to `sink` until it ends: the first HEAD_BYTES as they come, then only the last TAIL_BYTES
    (kept in memory, written at the end after a note of how much was left out). Reading never stops, so a
    compiler that floods its output is not blocked on a full pipe."""
    head_left, omitted = HEAD_BYTES, 0
    tail: collections.deque[bytes] = collections.deque()
    tail_bytes = 0
    for chunk in iter(lambda: source.read1(1 << 16), b""):
        kept = chunk[:head_left]
        sink.write(kept)
        head_left -= len(kept)
        if rest := chunk[len(kept) :]:
            tail.append(rest)
            tail_bytes += len(rest)
        while tail_bytes > TAIL_BYTES:
            first, excess = tail.popleft(), tail_bytes - TAIL_BYTES
            if len(first) > excess:
                tail.appendleft(first[excess:])
            dropped = min(len(first), excess)
            tail_bytes, omitted = tail_bytes - dropped, omitted + dropped
    if omitted:
        sink.write(omission_note(omitted))
    sink.writelines(tail)


def _problem(
    exit_code: int | None, compiled: list[Path], expected: str, output: CompilerOutput, killed_after_s: float
) -> str | None:
    if exit_code is None:
        return f"the compiler did not finish within {killed_after_s:g} s and was killed (with its process group)"
    if exit_code != 0:
        reasons = "; ".join(failure.message for failure in output.failures) or "see its output"
        return f"the compiler failed (exit code {exit_code}): {reasons}"
    if not compiled:
        return f"the compiler exited 0 but wrote no {expected}"
    if not output.edgetpu_subgraphs:
        return "the compiled model has no Edge TPU subgraph: every op runs on the CPU"
    return None
