"""The Edge TPU compiler adapter: find `edgetpu_compiler`, run it exactly as documented, and judge its result.

The compiler exists only for x86-64 Linux (Coral's apt repository). It is looked up in this order: a path the
recipe or command line configures, the CKIT_EDGETPU_COMPILER environment variable, then PATH. It runs with an
argument list (never a shell) in its own process group, so a timeout kills it and anything it started. A
compilation counts only when the exit code is 0 AND the output model exists AND it has at least one Edge TPU
subgraph (a model with nothing mapped still exits 0). stdout and the .log are kept as build artifacts.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from compiler_kit.edgetpu.log_parser import CompilerOutput, parse_compiler_output
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
    try:
        done = subprocess.run(
            [str(executable), "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"Edge TPU Compiler version (\S+)", done.stdout + done.stderr)
    return found.group(1) if found else None


class EdgeTpuCompiler:
    def __init__(self, executable: Path, grace_s: float = 30.0) -> None:
        self.executable = executable
        self.grace_s = grace_s  # beyond the compiler's own --timeout_sec, before ckit kills it

    def compile(self, model: Path, out_dir: Path, options: CompileOptions) -> CompileResult:
        command = [str(self.executable), "--out_dir", str(out_dir), *options.arguments(), str(model)]
        stdout_path = out_dir / STDOUT_FILE
        text, exit_code = _run_in_own_group(command, timeout=options.timeout_sec + self.grace_s)
        stdout_path.write_text(text)
        # NAME_edgetpu.{tflite,log}, or NAME_segment_K_of_N_edgetpu.{tflite,log} with --num_segments
        logs = sorted(out_dir.glob(f"{model.stem}*_edgetpu.log"))
        output = parse_compiler_output("\n".join([text, *(log.read_text(errors="replace") for log in logs)]))
        compiled = sorted(out_dir.glob(f"{model.stem}*_edgetpu.tflite"))
        expected = (
            f"{model.stem}_edgetpu.tflite" if options.num_segments is None else f"{options.num_segments} segments"
        )
        problem = _problem(exit_code, compiled, expected, output, options.timeout_sec + self.grace_s)
        return CompileResult(output, exit_code, compiled, stdout_path, logs, problem)


def _run_in_own_group(command: list[str], timeout: float) -> tuple[str, int | None]:
    """Run to completion or kill the whole process group at the timeout; stdout and stderr, merged."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        text, _ = process.communicate(timeout=timeout)
        return text, process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        text, _ = process.communicate()
        return text + f"\n[ckit] killed after {timeout:.0f} s\n", None


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
