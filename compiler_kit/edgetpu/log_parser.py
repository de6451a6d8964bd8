"""What the Edge TPU compiler said, structured: its stdout, its `NAME_edgetpu.log`, or both pasted into one text.

The wording drifted between compiler 2.0 and 16.0 and users paste output with prompts and tool lines around it, so
every line is optional and a line nobody recognises is skipped, never an error. How the numbers the compiler does
not print are derived is written on `CompilerOutput`.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Any

from compiler_kit.edgetpu import statuses
from compiler_kit.errors import BadInputError, strip_ansi


@dataclass
class OpRow:
    """One row of the op table. The same operator appears on one row per status, so rows are never merged."""

    operator: str
    count: int
    status: str
    mapped: bool


@dataclass
class Failure:
    kind: str
    message: str
    advice: str


@dataclass
class CompilerOutput:
    """One compiler run as the text shows it; a field the text does not tell stays None.

    `ops_on_edgetpu` / `ops_on_cpu`, in order of trust:
      1. the compiler's own "Number of operations that will run on Edge TPU/CPU" lines;
      2. a stdout summary ("Total number of operations") WITHOUT the "not all operations are supported" paragraph:
         the compiler prints that paragraph and those lines whenever an op stays on the CPU, so every op is on the
         Edge TPU (or every op on the CPU when it reports 0 Edge TPU subgraphs);
      3. the op table (.log or `-s`): rows "Mapped to Edge TPU" on the TPU, every other row on the CPU.
    `total_ops` is the compiler's figure, else the sum of the op table. `on_chip_remaining_bytes`: compiler 2.0 prints
    "On-chip memory available" instead, the cache size for the model (it equals "used" when parameters spill
    off-chip), so remaining = available - used there. `partial` is True when some op runs on the CPU.

    With several summaries (`-n` segments, or models co-compiled in one run) each is one entry of `segments`, and
    the top level sums the additive numbers (None where a segment lacks one) and concatenates the op rows;
    `on_chip_remaining_bytes`, `input_model` and `output_model` are then per segment only. A `.log` pasted after
    its stdout joins that model's summary (matched on the input file name) instead of adding a segment.
    `succeeded` follows the last verdict in the text ("Compilation succeeded!/failed!", a hard failure, "Model
    compiled successfully"); a new attempt (`-d` step, `-n` segment) without a verdict leaves it None; text with an
    op table and no verdict at all is a `.log`, which the compiler writes only after compiling.
    """

    compiler_version: str | None = None
    succeeded: bool | None = None
    partial: bool = False
    ops: list[OpRow] = field(default_factory=list)
    edgetpu_subgraphs: int | None = None
    total_ops: int | None = None
    ops_on_edgetpu: int | None = None
    ops_on_cpu: int | None = None
    on_chip_bytes: int | None = None
    on_chip_remaining_bytes: int | None = None
    off_chip_bytes: int | None = None
    compile_ms: int | None = None
    input_model: str | None = None
    output_model: str | None = None
    input_size_bytes: int | None = None
    output_size_bytes: int | None = None
    search_steps: list[int] = field(default_factory=list)
    segments: list[CompilerOutput] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_VERSION = re.compile(r"Edge TPU Compiler version (\S+)")
_HEADER = re.compile(r"^Operator\s+Count\s+Status$")
_ROW = re.compile(r"^([A-Z][A-Z0-9_]*)\s+(\d+)\s+(\S.*)$")
_COMPILED = re.compile(r"^(Models?) compiled successfully in (\d+) ms")
_TRY = re.compile(r"^Try to compile segment with (\d+) ops")
_KEY_VALUE = re.compile(r"^([A-Za-z][A-Za-z -]*?):\s*(.*)$")
_SIZE = re.compile(r"^([0-9]*\.?[0-9]+)\s*([KMG]i?B|B)$", re.IGNORECASE)
_SEGMENT = re.compile(r"_segment_\d+_of_\d+")
_OP_VERSION = re.compile(r"Didn't find op for builtin opcode '(\w+)' version '(\d+)'")
_UNITS = {"B": 1, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "KB": 1024, "MB": 1024**2, "GB": 1024**3}

# Summary keys -> (field, is a size). "available" is compiler 2.0's wording; see CompilerOutput.
_KEYS: dict[str, tuple[str, bool]] = {
    "Output model": ("output_model", False),
    "Output": ("output_model", False),
    "Input size": ("input_size_bytes", True),
    "Output size": ("output_size_bytes", True),
    "On-chip memory used for caching model parameters": ("on_chip_bytes", True),
    "On-chip memory remaining for caching model parameters": ("on_chip_remaining_bytes", True),
    "On-chip memory available for caching model parameters": ("on_chip_available_bytes", True),
    "Off-chip memory used for streaming uncached model parameters": ("off_chip_bytes", True),
    "Number of Edge TPU subgraphs": ("edgetpu_subgraphs", False),
    "Total number of operations": ("total_ops", False),
    "Number of operations that will run on Edge TPU": ("ops_on_edgetpu", False),
    "Number of operations that will run on CPU": ("ops_on_cpu", False),
}
# The compiler writes a few KB. Of anything larger only the head and the tail (where the summary and the verdict
# are) are kept and parsed, so a flooding or hostile file costs neither the memory nor the time to hold all of it.
HEAD_BYTES, TAIL_BYTES = 4 << 20, 1 << 20
_ADDITIVE = ("edgetpu_subgraphs", "total_ops", "ops_on_edgetpu", "ops_on_cpu", "on_chip_bytes", "off_chip_bytes")
_INT_FIELDS = {"edgetpu_subgraphs", "total_ops", "ops_on_edgetpu", "ops_on_cpu"}

_ADVICE = {
    "not_quantized": "Quantize every tensor to int8/uint8 with full-integer post-training quantization (a "
    "representative dataset and int8 or uint8 input and output types); weights-only quantization is not enough.",
    "invalid_model": "Check that the file is a .tflite flatbuffer that loads and runs in the TFLite interpreter, "
    "then convert it again with full-integer quantization.",
    "dynamic_shape": "Give every tensor a static shape (batch 1, no None dimensions, a fixed input signature) when "
    "converting, and remove ops whose output shape depends on the data.",
    "large_activations": "Shrink the activations (a smaller input resolution) or cut the model: compile with -d to "
    "search for a part that fits, -i to stop at an intermediate tensor, or -n to split it over several Edge TPUs.",
    "internal_error": "Retry once, then confirm every tensor is int8 with static shapes and bisect the model with -i "
    "(intermediate tensors) to find the op that crashes the compiler.",
    "compilation_failed": "The compiler gave no reason: check that the model runs in the TFLite interpreter with int8 "
    "tensors and static shapes, then bisect it with -i (intermediate tensors) to find the op it rejects.",
}
_HARD = ("not_quantized", "op_version", "dynamic_shape", "large_activations", "internal_error")


def parse_size(text: str) -> int | None:
    """`6.00MiB` -> 6291456. KB/MB are read as binary units like the compiler's KiB/MiB (the chip has about 8 MB)."""
    match = _SIZE.match(text.strip())
    return round(float(match[1]) * _UNITS[match[2].upper()]) if match else None


def format_bytes(size: int | None) -> str:
    if size is None:
        return "-"
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.2f} {unit}"


def _classify(line: str) -> Failure | None:
    if match := _OP_VERSION.search(line):
        op, version = match.groups()
        advice = (
            f"The converter that wrote this model is newer than compiler 16's TFLite (about TF 2.5-2.7): convert with "
            f"an older TensorFlow or replace {op} so it is emitted below version {version}."
        )
        return Failure("op_version", line, advice)
    kind = next(
        (
            kind
            for needle, kind in (
                ("Model not quantized", "not_quantized"),
                ("Invalid model", "invalid_model"),
                ("only supports static-sized tensors", "dynamic_shape"),
                ("large activation tensors", "large_activations"),
                ("Internal compiler error", "internal_error"),
            )
            if needle in line
        ),
        "compilation_failed" if line.startswith("Compilation failed:") else None,
    )
    return Failure(kind, line, _ADVICE[kind]) if kind else None


@dataclass
class _Block:
    """One model's summary and op table while parsing; `sources` says whether stdout, a .log or both fed it."""

    out: CompilerOutput = field(default_factory=CompilerOutput)
    sources: set[str] = field(default_factory=set)
    on_chip_available_bytes: int | None = None


class _Parser:
    def __init__(self) -> None:
        self.version: str | None = None
        self.blocks: list[_Block] = []
        self.current: _Block | None = None
        self.table: _Block | None = None  # where op rows go; None while skipping a table already read
        self.in_table = False
        self.verdict: bool | None = None
        self.events = 0
        self.pending_ms: int | None = None
        self.compile_ms: list[int] = []
        self.steps: list[int] = []
        self.failures: list[Failure] = []
        self.warnings: list[str] = []

    def block(self) -> _Block:
        if self.current is None:
            self.current = _Block()
            self.blocks.append(self.current)
        return self.current

    def start(self, source: str, model: str) -> None:
        # The .log after its stdout (or the reverse) describes the same model: join it instead of a new segment.
        name = PurePath(model).name
        for block in self.blocks:
            if block.sources and source not in block.sources and PurePath(block.out.input_model or "").name == name:
                block.sources.add(source)
                self.current = block
                return
        self.current = _Block(CompilerOutput(input_model=model), {source})
        self.blocks.append(self.current)
        if source == "stdout" and self.pending_ms is not None:
            self.current.out.compile_ms, self.pending_ms = self.pending_ms, None

    def event(self, verdict: bool | None) -> None:
        self.verdict, self.events = verdict, self.events + 1

    def feed(self, raw: str) -> None:
        line = strip_ansi(raw).strip()
        if self.in_table:
            if row := _ROW.match(line):
                if self.table is not None:
                    status = row[3].strip()
                    self.table.out.ops.append(OpRow(row[1], int(row[2]), status, status == statuses.MAPPED))
                return
            if not line:
                return
            self.in_table = False
        if not line:
            return
        if match := _VERSION.search(line):
            self.version = self.version or match[1]
        elif _HEADER.match(line):
            block = self.block()
            self.in_table, self.table = True, None if block.out.ops else block
        elif match := _COMPILED.match(line):
            self.compile_ms.append(int(match[2]))
            # "Models compiled" is one time for all co-compiled models: it belongs to no single one.
            self.pending_ms = int(match[2]) if match[1] == "Model" else None
            self.event(True)
        elif match := _TRY.match(line):
            self.steps.append(int(match[1]))
            self.event(None)
        elif line.startswith("Started a compilation timeout timer"):
            self.event(None)
        elif line.startswith("Compilation succeeded"):
            self.event(True)
        elif line.startswith("Compilation failed!"):
            self.event(False)
            if not self.failures:
                self.failures.append(Failure("compilation_failed", line, _ADVICE["compilation_failed"]))
        elif "Model successfully compiled but not all operations are supported" in line:
            self.block().out.partial = True
        elif line.startswith("Warning:"):
            self.warnings.append(line)
        elif failure := _classify(line):
            self.failures.append(failure)
            self.event(False)
        elif match := _KEY_VALUE.match(line):
            self.key_value(match[1].strip(), match[2].strip())

    def key_value(self, key: str, value: str) -> None:
        if key in ("Input model", "Input"):
            self.start("stdout" if key == "Input model" else "log", value)
            return
        if key not in _KEYS:
            return
        name, is_size = _KEYS[key]
        if name in _INT_FIELDS and not value.isdigit():
            return
        block = self.block()
        if name == "output_model" and block.out.output_model:
            return  # a .log joined to its stdout: keep the path stdout gave
        parsed: Any = parse_size(value) if is_size else int(value) if name in _INT_FIELDS else value
        setattr(block if name == "on_chip_available_bytes" else block.out, name, parsed)

    def result(self) -> CompilerOutput:
        blocks = [_finish(block) for block in self.blocks]
        segmented = len(blocks) > 1 or any(_SEGMENT.search(b.input_model or "") for b in blocks)
        if not blocks:
            top = CompilerOutput()
        elif not segmented:
            top = blocks[0]
        else:
            top = CompilerOutput(segments=blocks, ops=[row for b in blocks for row in b.ops])
            for name in _ADDITIVE:
                setattr(top, name, _total([getattr(b, name) for b in blocks]))
            top.partial = any(b.partial for b in blocks)
        for block in [top, *top.segments]:
            block.compiler_version = self.version
        top.compile_ms = sum(self.compile_ms) if self.compile_ms else top.compile_ms
        top.search_steps, top.warnings = self.steps, self.warnings
        top.failures = _relevant(self.failures)
        top.succeeded = self.verdict if self.events else (True if top.ops else None)
        return top


def _total(values: list[int | None]) -> int | None:
    return None if any(value is None for value in values) else sum(value or 0 for value in values)


def _finish(block: _Block) -> CompilerOutput:
    out = block.out
    available, used = block.on_chip_available_bytes, out.on_chip_bytes
    if out.on_chip_remaining_bytes is None and available is not None and used is not None:
        out.on_chip_remaining_bytes = max(available - used, 0)
    if out.ops_on_edgetpu is None and out.ops_on_cpu is None:
        if out.total_ops is not None and not out.partial:
            on_tpu = out.edgetpu_subgraphs != 0
            out.ops_on_edgetpu, out.ops_on_cpu = (out.total_ops, 0) if on_tpu else (0, out.total_ops)
        elif out.ops:
            out.ops_on_edgetpu = sum(row.count for row in out.ops if row.mapped)
            out.ops_on_cpu = sum(row.count for row in out.ops if not row.mapped)
    if out.total_ops is None and out.ops:
        out.total_ops = sum(row.count for row in out.ops)
    out.partial = out.partial or bool(out.ops_on_cpu)
    out.succeeded = True  # a summary or an op table is only printed for a model that compiled
    return out


def _relevant(failures: list[Failure]) -> list[Failure]:
    """Drop repeats (a -d search fails the same way at every step) and generic lines a specific one explains."""
    kinds = {failure.kind for failure in failures}
    unique: dict[tuple[str, str], Failure] = {}
    for failure in failures:
        if failure.kind == "invalid_model" and kinds & {"not_quantized", "op_version"}:
            continue
        if failure.kind == "compilation_failed" and kinds & set(_HARD):
            continue
        unique.setdefault((failure.kind, failure.message), failure)
    return list(unique.values())


def parse_compiler_output(*texts: str) -> CompilerOutput:
    """Parse stdout and/or .log text of `edgetpu_compiler` (several texts read as if joined by newlines, one at a
    time); never raises, unknown lines are skipped."""
    parser = _Parser()
    for text in texts:
        for line in text.splitlines():
            parser.feed(line)
    return parser.result()


def _recognised(out: CompilerOutput) -> bool:
    return bool(out.compiler_version or out.ops or out.failures or out.search_steps or out.segments) or any(
        value is not None
        for value in (out.succeeded, out.total_ops, out.edgetpu_subgraphs, out.on_chip_bytes, out.input_model)
    )


def omission_note(omitted: int) -> bytes:
    return f"\n[ckit] {omitted} bytes of output left out here\n".encode()


def read_head_and_tail(path: Path) -> bytes:
    """The file's bytes, or of a file over HEAD_BYTES + TAIL_BYTES its head and tail with a note between them."""
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
        size = os.fstat(handle.fileno()).st_size
        if size <= HEAD_BYTES + TAIL_BYTES:
            return head + handle.read(TAIL_BYTES)
        handle.seek(size - TAIL_BYTES)
        return head + omission_note(size - HEAD_BYTES - TAIL_BYTES) + handle.read(TAIL_BYTES)


def read_log(path: Path) -> CompilerOutput:
    """Parse a saved compiler log or captured stdout; a file that is not one is a BadInputError naming it."""
    fix = "pass NAME_edgetpu.log (written next to the compiled model) or the compiler's captured stdout"
    if not path.is_file():
        raise BadInputError("no such file" if not path.exists() else "not a file", path=path, fix=fix)
    try:
        data = read_head_and_tail(path)
    except OSError as exc:
        raise BadInputError(
            f"cannot read it: {exc.strerror or exc}",
            path=path,
            fix="pass the compiler's NAME_edgetpu.log or its captured stdout",
        ) from None
    if b"\x00" in data:
        raise BadInputError("a binary file, not compiler output (a .tflite model?)", path=path, fix=fix)
    result = parse_compiler_output(data.decode("utf-8", errors="replace"))
    if not _recognised(result):
        raise BadInputError("no Edge TPU compiler output found", path=path, fix=fix)
    return result
