"""The compiler-output parser on real Edge TPU compiler output (tests/edgetpu/logs/, sources in SOURCES.md)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from compiler_kit.edgetpu import statuses
from compiler_kit.edgetpu.log_parser import (
    HEAD_BYTES,
    TAIL_BYTES,
    CompilerOutput,
    OpRow,
    format_bytes,
    parse_compiler_output,
    parse_size,
    read_log,
)
from compiler_kit.errors import BadInputError

LOGS = Path(__file__).parent / "logs"
MIB = 1024 * 1024


def parse(name: str) -> CompilerOutput:
    return read_log(LOGS / name)


def test_tiny_yolo_14_1_log_keeps_every_row_in_order() -> None:
    out = parse("tiny_yolo_14.1.log")
    assert out.compiler_version == "14.1.317412892"
    assert (out.input_model, out.output_model) == ("tiny_yolo.tflite", "tiny_yolo_edgetpu.tflite")
    assert [row.operator for row in out.ops] == [
        "CONCATENATION", "MAX_POOL_2D", "RESIZE_NEAREST_NEIGHBOR", "CONV_2D", "CONV_2D", "QUANTIZE", "QUANTIZE",
        "QUANTIZE",
    ]  # fmt: skip
    assert [(r.count, r.status) for r in out.ops if r.operator == "CONV_2D"] == [
        (11, statuses.MAPPED),
        (2, statuses.MORE_THAN_ONE_SUBGRAPH),
    ]
    assert [(r.count, r.mapped) for r in out.ops if r.operator == "QUANTIZE"] == [(1, False), (1, False), (2, True)]
    assert out.ops[5].status == statuses.UNSPECIFIED_LIMITATION
    assert out.ops[2] == OpRow("RESIZE_NEAREST_NEIGHBOR", 1, statuses.VERSION_NOT_SUPPORTED, False)
    # A .log has no summary: the split comes from the table (6 + 11 + 2 mapped; 1 + 1 + 2 + 1 + 1 not).
    assert (out.ops_on_edgetpu, out.ops_on_cpu, out.total_ops) == (19, 6, 25)
    assert out.edgetpu_subgraphs is None and out.on_chip_bytes is None and out.off_chip_bytes is None
    assert out.succeeded is True and out.partial is True and out.failures == [] and out.segments == []


def test_every_status_the_facts_list_is_read_whole() -> None:
    rows = "\n".join(f"{'OP_' + str(i):<31}{i + 1:<11}{status}" for i, status in enumerate(statuses.ALL))
    out = parse_compiler_output("Operator                       Count      Status\n\n" + rows)
    assert [row.status for row in out.ops] == list(statuses.ALL)
    assert [row.mapped for row in out.ops] == [status == statuses.MAPPED for status in statuses.ALL]


@pytest.mark.parametrize(
    ("name", "version", "rows", "on_tpu", "on_cpu", "partial"),
    [
        ("id_card_2.1.log", "2.1.302470888", 8, 75, 2, True),
        ("franco_15.0.log", "15.0.340273435", 2, 3, 0, False),
        ("efficientdet_16.0.log", "16.0.384591198", 16, 510, 3, True),
        ("nothing_mapped_16.0.log", "16.0.384591198", 3, 0, 4, True),
    ],
)
def test_logs_of_several_compiler_versions(
    name: str, version: str, rows: int, on_tpu: int, on_cpu: int, partial: bool
) -> None:
    out = parse(name)
    assert out.compiler_version == version and len(out.ops) == rows
    assert (out.ops_on_edgetpu, out.ops_on_cpu, out.total_ops) == (on_tpu, on_cpu, on_tpu + on_cpu)
    assert out.partial is partial and out.succeeded is True


def test_nothing_mapped_log() -> None:
    out = parse("nothing_mapped_16.0.log")
    assert not any(row.mapped for row in out.ops)
    assert {row.status for row in out.ops} == {statuses.UNSUPPORTED_DATA_TYPE}


def test_14_1_stdout_with_wrapped_warning_paragraph() -> None:
    out = parse("t1_14.1_stdout.txt")
    assert out.partial is True and out.succeeded is True and out.ops == []
    assert (out.ops_on_edgetpu, out.ops_on_cpu, out.total_ops, out.edgetpu_subgraphs) == (6, 18, 24, 1)
    assert out.on_chip_bytes == 60 * 1024
    assert out.on_chip_remaining_bytes == round(7.96 * MIB)
    assert out.off_chip_bytes == 0 and out.compile_ms == 113
    assert out.input_size_bytes == round(28.19 * 1024) and out.output_size_bytes == round(116.78 * 1024)


def test_15_0_stdout_with_op_table_agrees_with_its_counts() -> None:
    out = parse("yolov3_tiny_15.0_stdout.txt")  # starts with a shell line, which is skipped
    assert out.input_model == "/home/yolo/yolov3-tiny_int8.tflite"
    assert (out.ops_on_edgetpu, out.ops_on_cpu, out.total_ops) == (2, 34, 36)
    assert sum(r.count for r in out.ops if r.mapped) == 2 and sum(r.count for r in out.ops if not r.mapped) == 34
    assert [r.count for r in out.ops if r.operator == "QUANTIZE"] == [2, 1, 1]
    assert out.on_chip_bytes == 3 * 1024 and out.off_chip_bytes == 0 and out.compile_ms == 577


def test_status_outside_the_known_list_is_kept_unmapped() -> None:
    out = parse("yolov5s_15.0_stdout.txt")
    odd = [r for r in out.ops if r.status not in statuses.ALL]
    assert odd == [OpRow("STRIDED_SLICE", 4, "Only Strided-Slice with unitary strides supported", False)]
    assert (out.ops_on_edgetpu, out.ops_on_cpu, out.total_ops) == (1, 293, 294)
    assert sum(r.count for r in out.ops if not r.mapped) == 293


def test_16_0_stdout_all_mapped_counts_come_from_the_summary() -> None:
    out = parse("mobilenetv3_16.0_stdout.txt")
    assert out.succeeded is True and out.partial is False and out.ops == []
    # No "not all operations are supported" paragraph: every one of the 50 ops is on the Edge TPU.
    assert (out.ops_on_edgetpu, out.ops_on_cpu, out.total_ops, out.edgetpu_subgraphs) == (50, 0, 50, 1)
    assert out.on_chip_bytes == round(604.50 * 1024) and out.on_chip_remaining_bytes == round(511.50 * 1024)
    assert out.off_chip_bytes == round(3.45 * MIB) and out.compile_ms == 542


def test_compiler_2_0_available_is_the_cache_size_not_what_is_left() -> None:
    ssd = parse("ssd_2.0_stdout.txt")
    assert ssd.compiler_version == "2.0.267685300"
    assert ssd.on_chip_bytes == round(5.66 * MIB)
    assert ssd.on_chip_remaining_bytes == round(7.62 * MIB) - round(5.66 * MIB)
    assert (ssd.ops_on_edgetpu, ssd.ops_on_cpu, ssd.total_ops) == (63, 1, 64) and ssd.ops == []
    resnet = parse("resnet50_2.0_stdout.txt")  # 6.25 MiB "available", 6.25 used, 18.43 MiB streamed off-chip
    assert resnet.on_chip_remaining_bytes == 0 and resnet.off_chip_bytes == round(18.43 * MIB)
    assert (resnet.ops_on_edgetpu, resnet.ops_on_cpu) == (77, 0)


def test_co_compiled_models_are_one_segment_each() -> None:
    out = parse("cocompiled_15.0_stdout.txt")
    assert [s.input_model for s in out.segments] == ["cnn.tflite", "rnn.tflite"]
    assert [s.total_ops for s in out.segments] == [313, 78]
    assert [s.on_chip_bytes for s in out.segments] == [round(7.16 * MIB), 0]
    assert [s.on_chip_remaining_bytes for s in out.segments] == [2304, 2304]
    assert (out.total_ops, out.edgetpu_subgraphs, out.ops_on_cpu) == (391, 2, 0)
    assert out.off_chip_bytes == round(2.95 * MIB) + round(4.53 * MIB)
    assert out.compile_ms == 2988 and out.input_model is None and out.on_chip_remaining_bytes is None


def test_two_logs_pasted_together() -> None:
    out = parse("mnist_two_logs_15.0.txt")
    assert [s.input_model for s in out.segments] == ["mnist4.tflite", "mnist7.tflite"]
    assert [(s.ops_on_edgetpu, s.ops_on_cpu) for s in out.segments] == [(8, 2), (8, 0)]
    assert len(out.ops) == 12 and (out.ops_on_edgetpu, out.ops_on_cpu) == (16, 2)


def test_num_segments_run() -> None:
    out = parse("segmented_16.0_stdout.txt")
    [segment] = out.segments  # the quoted output ends while segment 1 is compiling
    assert segment.input_model == "efficientdet_lite3_512_ptq_segment_0_of_2.tflite"
    assert (segment.total_ops, segment.ops_on_edgetpu, segment.ops_on_cpu) == (84, 84, 0)
    assert segment.on_chip_bytes == round(6.02 * MIB) and segment.on_chip_remaining_bytes == round(1.02 * MIB)
    assert segment.compile_ms == 1857 and segment.succeeded is True
    assert out.succeeded is None  # a new compilation started after "Compilation succeeded!" and never finished


def test_search_delegate_run_that_compiled() -> None:
    out = parse("search_delegate_16.0_stdout.txt")
    assert out.search_steps == [246] and out.succeeded is True
    assert out.off_chip_bytes == 42752  # 41.75KiB
    assert out.on_chip_bytes == round(5.90 * MIB) and out.input_size_bytes == 6 * MIB
    # The quoted table is cut short (8 rows, 106 ops); the summary's own figure wins.
    assert sum(r.count for r in out.ops) == 106
    assert (out.total_ops, out.ops_on_edgetpu, out.ops_on_cpu) == (246, 246, 0)


def test_search_delegate_run_that_keeps_failing() -> None:
    out = parse("search_delegate_failing_16.0_stdout.txt")
    assert out.search_steps == [322, 312, 302]
    assert [f.kind for f in out.failures] == ["large_activations"]  # the same failure at each step, once
    assert out.succeeded is None and out.segments == [] and out.ops == []


@pytest.mark.parametrize(
    ("name", "version", "kind", "message"),
    [
        ("not_quantized_14.1.txt", "14.1.317412892", "not_quantized", "Model not quantized"),
        ("internal_error_15.0.txt", "15.0.340273435", "internal_error", "Internal compiler error. Aborting!"),
        ("internal_error_2.0.txt", "2.0.267685300", "internal_error", "Internal compiler error. Aborting!"),
        (
            "dynamic_shape_16.0.txt",
            "16.0.384591198",
            "dynamic_shape",
            "ERROR: Attempting to use a delegate that only supports static-sized tensors with a graph that has "
            "dynamic-sized tensors.",
        ),
        (
            "large_activations_16.0.txt",
            "16.0.384591198",
            "large_activations",
            "Compilation failed: Compilation failed due to large activation tensors in model.",
        ),
    ],
)
def test_failures(name: str, version: str, kind: str, message: str) -> None:
    out = parse(name)
    assert out.compiler_version == version and out.succeeded is False
    assert [(f.kind, f.message) for f in out.failures] == [(kind, message)]
    assert out.failures[0].advice.endswith(".") and "\n" not in out.failures[0].advice
    assert out.ops == [] and out.total_ops is None and out.ops_on_cpu is None


def test_op_version_failure_names_the_op_and_the_fix() -> None:
    out = parse("op_version_16.0.txt")
    assert out.succeeded is False
    [failure] = out.failures  # "Invalid model" and "Registration failed" say nothing more
    assert failure.kind == "op_version" and "'TRANSPOSE_CONV' version '4'" in failure.message
    assert "TRANSPOSE_CONV" in failure.advice and "2.5-2.7" in failure.advice


def test_invalid_model_alone_and_a_failure_without_reason() -> None:
    out = parse_compiler_output("Edge TPU Compiler version 16.0.384591198\nInvalid model: x.tflite\n")
    assert [f.kind for f in out.failures] == ["invalid_model"]
    lstm = parse_compiler_output(
        "Edge TPU Compiler version 16.0.384591198\nStarted a compilation timeout timer of 180 seconds.\n"
        "Compilation child process completed within timeout period.\nCompilation failed!\n"
    )
    assert lstm.succeeded is False and [f.kind for f in lstm.failures] == ["compilation_failed"]


def test_stdout_then_its_log_is_one_model_not_two() -> None:
    stdout = (LOGS / "yolov3_tiny_15.0_stdout.txt").read_text()
    table = stdout[stdout.index("Operator ") :]
    log = f"Edge TPU Compiler version 15.0.340273435\nInput: yolo/yolov3-tiny_int8.tflite\nOutput: x.tflite\n\n{table}"
    out = parse_compiler_output(stdout + "\n" + log)
    assert out.segments == [] and len(out.ops) == 9 and (out.ops_on_edgetpu, out.ops_on_cpu) == (2, 34)
    assert out.output_model == "/home/yolo/yolov3-tiny_int8_edgetpu.tflite"
    no_table = stdout[: stdout.index("Operator ")]
    joined = parse_compiler_output(no_table + log)
    assert joined.segments == [] and len(joined.ops) == 9 and joined.total_ops == 36


def test_unknown_lines_are_tolerated() -> None:
    noisy = "\n".join(
        [
            "$ edgetpu_compiler -s model.tflite",
            "\x1b[31mcolour\x1b[0m",
            "Some: thing",
            "Number of Edge TPU subgraphs: x",
        ]
    )
    text = (
        noisy + "\n" + (LOGS / "tiny_yolo_14.1.log").read_text() + "\nWarning: something new\nTotally unknown 1 2 3\n"
    )
    out = parse_compiler_output(text.replace("\n", "\r\n"))
    assert len(out.ops) == 8 and (out.ops_on_edgetpu, out.ops_on_cpu) == (19, 6)
    assert out.warnings == ["Warning: something new"] and out.edgetpu_subgraphs is None
    assert parse_compiler_output("") == CompilerOutput()
    assert parse_compiler_output("hello\nworld 1 2\n:::\n").as_dict() == CompilerOutput().as_dict()


def test_zero_subgraphs_without_counts_means_all_on_cpu() -> None:
    out = parse_compiler_output("Number of Edge TPU subgraphs: 0\nTotal number of operations: 69\n")
    assert (out.ops_on_edgetpu, out.ops_on_cpu) == (0, 69)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("6.00MiB", 6291456),
        ("41.75KiB", 42752),
        ("0.00B", 0),
        ("7.96MiB", round(7.96 * MIB)),
        ("1.5GiB", 3 * 512 * MIB),
        ("2KB", 2048),
        ("3.5 MB", round(3.5 * MIB)),
        ("12", None),
        ("MiB", None),
    ],
)
def test_sizes(text: str, size: int | None) -> None:
    assert parse_size(text) == size


def test_format_bytes() -> None:
    assert [format_bytes(n) for n in (None, 0, 1023, 42752, 6291456)] == ["-", "0 B", "1023 B", "41.75 KiB", "6.00 MiB"]


def test_as_dict_is_json_ready() -> None:
    data = parse("tiny_yolo_14.1.log").as_dict()
    keys = {"compiler_version", "ops", "edgetpu_subgraphs", "ops_on_edgetpu", "ops_on_cpu", "on_chip_bytes"}
    assert keys | {"off_chip_bytes", "segments", "failures", "succeeded"} <= set(data)
    assert data["ops"][3] == {"operator": "CONV_2D", "count": 11, "status": statuses.MAPPED, "mapped": True}
    failure = parse("not_quantized_14.1.txt").as_dict()["failures"][0]
    assert set(failure) == {"kind", "message", "advice"}


def test_read_log_rejects_what_is_not_compiler_output(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="no such file") as missing:
        read_log(tmp_path / "absent.log")
    assert "absent.log" in str(missing.value)
    with pytest.raises(BadInputError, match="not a file"):
        read_log(tmp_path)
    binary = tmp_path / "model.tflite"
    binary.write_bytes(b"TFL3\x00\x00\x12\x00")
    with pytest.raises(BadInputError, match="binary"):
        read_log(binary)
    prose = tmp_path / "notes.txt"
    prose.write_text("just some notes\nnothing: here\n")
    with pytest.raises(BadInputError, match="no Edge TPU compiler output found") as none:
        read_log(prose)
    assert "notes.txt" in str(none.value)


def test_a_huge_file_is_read_as_its_head_and_tail(tmp_path: Path) -> None:
    """A 1 GiB capture (a compiler that flooded its output between the log and the summary): only the head and the
    tail are read, so the op table and the verdict are found without holding the gigabyte."""
    noise = b"W flooding line from a compiler gone wrong\n" * (HEAD_BYTES // 43 + 1)
    path = tmp_path / "huge.txt"
    with path.open("wb") as handle:
        handle.write((LOGS / "tiny_yolo_14.1.log").read_bytes() + noise)
        handle.seek(1 << 30)  # the gigabyte in between is a hole: never written, and never read
        handle.write(noise[:TAIL_BYTES] + (LOGS / "mobilenetv3_16.0_stdout.txt").read_bytes())
    tracemalloc.start()
    try:
        out = read_log(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * MIB
    assert out.ops and out.segments  # the head's op table and the tail's summary, each a block of its own
    assert out.succeeded is True and out.segments[1].edgetpu_subgraphs == 1
