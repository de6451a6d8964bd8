"""The edgetpu stage: compile the int8 model when edgetpu_compiler is here, else predict its verdict.

Either way the report gets one section with the same keys (ops on the Edge TPU and on the CPU, subgraphs,
on-chip and off-chip parameter bytes), marked `predicted: true` when it comes from static analysis. When a compiled
model exists, the Edge TPU runtime is probed so the report can say which of library or device is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compiler_kit.artifacts import sha256_file
from compiler_kit.cache import RETRY, Entry, resolve_files
from compiler_kit.edgetpu.compiler import CompileOptions, EdgeTpuCompiler, compiler_version, find_compiler
from compiler_kit.errors import ToolMissingError
from compiler_kit.recipe import EdgeTpu
from compiler_kit.stages.base import CachedStage, Job
from compiler_kit.stages.quantize import QUANTIZE

EDGETPU_FILES = "edgetpu"  # the build folder's folder of the compiler's files

NO_COMPILER = (
    "edgetpu_compiler not found (it installs only on x86-64 Linux, from Coral's apt repository): "
    "set edgetpu.compiler or CKIT_EDGETPU_COMPILER to use one"
)


@dataclass
class EdgeTpuOutcome:
    """The report's `edgetpu` section, the compiled model (if any) and whether a device can run it here."""

    section: dict[str, Any]
    compiled_model: Path | None = None
    runnable: bool = False
    gate_values: dict[str, float | None] = field(default_factory=dict)


def require_compiler(settings: EdgeTpu) -> Path | None:
    """The compiler to use, found before any conversion runs, so `required` without one fails at once (exit 4)."""
    if settings.compile == "off":
        return None
    executable = find_compiler(settings.compiler)
    if executable is None and settings.compile == "required":
        raise ToolMissingError(f"edgetpu.compile is 'required' but {NO_COMPILER}")
    return executable


def edgetpu_section(settings: EdgeTpu, executable: Path | None, int8_model: Path, out_dir: Path) -> dict[str, Any]:
    """The compiler's verdict (its files in `out_dir`), or the static prediction when there is no compiler.
    What this machine can run is not part of it: `outcome` probes that at every build."""
    if executable is None:
        from compiler_kit.edgetpu.analysis import analyze

        verdict = analyze(int8_model).as_dict()
        return {"mode": settings.compile, "compiled": False, "note": NO_COMPILER, **verdict, "predicted": True}
    result = EdgeTpuCompiler(executable).compile(int8_model, out_dir, _options(settings))
    return {
        "mode": settings.compile,
        "compiled": result.succeeded,
        "problem": result.problem,
        "compiler": {"path": str(executable), "version": compiler_version(executable), "exit_code": result.exit_code},
        "stdout": str(result.stdout_path),
        "logs": [str(log) for log in result.log_paths],
        "compiled_models": [str(model) for model in result.compiled_models] if result.succeeded else [],
        **result.output.as_dict(),
        "predicted": False,
    }


def outcome(settings: EdgeTpu, section: dict[str, Any]) -> EdgeTpuOutcome:
    """The stage's result for this build: the section, plus whether an Edge TPU here can run the compiled model."""
    if settings.compile == "off":
        return EdgeTpuOutcome({"mode": "off"})
    section = dict(section)
    if section["predicted"]:
        _probe_runtime(settings.device, section)  # nothing to run, but the report says what this machine lacks
        return EdgeTpuOutcome(section, gate_values=_gate_values(section))
    # Segments (--num_segments) run pipelined across several devices: the runner takes one whole model only.
    models = section["compiled_models"]
    compiled = Path(models[0]) if len(models) == 1 else None
    runnable = compiled is not None and _probe_runtime(settings.device, section)
    return EdgeTpuOutcome(section, compiled, runnable, _gate_values(section))


class EdgeTpuStage(CachedStage[EdgeTpuOutcome]):
    name = "edgetpu"
    installed = (EDGETPU_FILES,)

    def plan(self, job: Job) -> str:
        if job.recipe.edgetpu.compile == "off":
            return "off (edgetpu.compile: off)"
        return f"compile with {job.compiler}" if job.compiler else "predict (static analysis)"

    def key_inputs(self, job: Job) -> dict[str, Any]:
        settings = job.recipe.edgetpu.model_dump(mode="json", exclude={"compiler", "device"})
        compiler = job.compiler
        tool = (
            {"sha256": sha256_file(compiler), "version": compiler_version(compiler)} if compiler else "static analysis"
        )
        return {"int8_sha256": sha256_file(job[QUANTIZE].int8_tflite), "settings": settings, "compiler": tool}

    def produce(self, job: Job, files: Path) -> dict[str, Any]:
        (files / EDGETPU_FILES).mkdir()
        section = edgetpu_section(job.recipe.edgetpu, job.compiler, job[QUANTIZE].int8_tflite, files / EDGETPU_FILES)
        killed = not section["predicted"] and section["compiler"]["exit_code"] is None  # timed out: try again
        return {"section": section, RETRY: killed}

    def load(self, job: Job, entry: Entry) -> EdgeTpuOutcome:
        return outcome(job.recipe.edgetpu, resolve_files(entry.meta["section"], job.folder.root))

    def run(self, job: Job) -> EdgeTpuOutcome:
        return outcome(job.recipe.edgetpu, {}) if job.recipe.edgetpu.compile == "off" else super().run(job)


EDGETPU = EdgeTpuStage()


def _options(settings: EdgeTpu) -> CompileOptions:
    return CompileOptions(
        timeout_sec=settings.timeout_sec,
        min_runtime_version=settings.min_runtime_version,
        num_segments=settings.num_segments,
        search_delegate=settings.search_delegate,
        delegate_search_step=settings.delegate_search_step,
        intermediate_tensors=tuple(settings.intermediate_tensors),
    )


def _probe_runtime(device: str, section: dict[str, Any]) -> bool:
    from compiler_kit.edgetpu.runtime import edgetpu_availability

    available, reason = edgetpu_availability(device)
    section["runtime"] = {"available": available, "device": device, "reason": reason}
    return available


def _gate_values(section: dict[str, Any]) -> dict[str, float | None]:
    on_tpu, on_cpu = section.get("ops_on_edgetpu"), section.get("ops_on_cpu")
    total = (on_tpu or 0) + (on_cpu or 0)
    return {
        "ops_on_edgetpu_fraction": on_tpu / total if on_tpu is not None and total else None,
        "off_chip_bytes": section.get("off_chip_bytes"),
    }
