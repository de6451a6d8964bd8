"""The compiler adapter's subprocess plumbing, driven by a TEST DOUBLE compiler (fake_edgetpu_compiler.py).

The real edgetpu_compiler cannot be installed here; the parser it feeds is tested on real logs elsewhere.
"""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import psutil
import pytest

from compiler_kit.edgetpu.compiler import (
    ENV_VAR,
    CompileOptions,
    EdgeTpuCompiler,
    compiler_version,
    find_compiler,
)
from compiler_kit.edgetpu.log_parser import HEAD_BYTES, TAIL_BYTES
from compiler_kit.errors import BadInputError


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model_int8.tflite"
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    return path


def compile_with(mode: str, compiler: Path, model: Path, monkeypatch, **options):
    monkeypatch.setenv("FAKE_EDGETPU_MODE", mode)
    out = model.parent / "out"
    out.mkdir(exist_ok=True)
    return EdgeTpuCompiler(compiler, grace_s=0.5).compile(model, out, CompileOptions(**options))


def test_success_keeps_stdout_and_log_and_parses_them(fake_compiler, model, monkeypatch) -> None:
    result = compile_with("success", fake_compiler, model, monkeypatch)
    assert result.succeeded and result.exit_code == 0
    assert result.compiled_models == [model.parent / "out" / "model_int8_edgetpu.tflite"]
    assert "Compilation succeeded!" in result.stdout_path.read_text()
    assert [log.name for log in result.log_paths] == ["model_int8_edgetpu.log"]
    assert result.output.edgetpu_subgraphs == 1
    assert result.output.on_chip_bytes == 42752
    assert result.output.compiler_version == "16.0.384591198"


def test_options_become_the_documented_arguments(fake_compiler, model, monkeypatch, tmp_path) -> None:
    args_file = tmp_path / "args.txt"
    monkeypatch.setenv("FAKE_EDGETPU_ARGS_FILE", str(args_file))
    options = dict(
        min_runtime_version=13, num_segments=2, search_delegate=True, delegate_search_step=4,
        intermediate_tensors=("a", "b"), timeout_sec=60,
    )  # fmt: skip
    compile_with("success", fake_compiler, model, monkeypatch, **options)
    args = args_file.read_text().split()
    assert args[:2] == ["--out_dir", str(model.parent / "out")] and args[-1] == str(model)
    for flag, value in [("--min_runtime_version", "13"), ("--num_segments", "2"), ("--delegate_search_step", "4"),
                        ("--intermediate_tensors", "a,b"), ("--timeout_sec", "60")]:  # fmt: skip
        assert args[args.index(flag) + 1] == value
    assert "--search_delegate" in args and "--show_operations" in args


def test_segments_are_all_kept(fake_compiler, model, monkeypatch) -> None:
    result = compile_with("success", fake_compiler, model, monkeypatch, num_segments=2)
    assert result.succeeded
    assert [m.name for m in result.compiled_models] == [
        "model_int8_segment_0_of_2_edgetpu.tflite",
        "model_int8_segment_1_of_2_edgetpu.tflite",
    ]
    assert len(result.log_paths) == 2 and len(result.output.segments) == 2


def test_non_zero_exit_is_a_failure_with_the_compilers_reason(fake_compiler, model, monkeypatch) -> None:
    result = compile_with("fail", fake_compiler, model, monkeypatch)
    assert not result.succeeded and result.exit_code == 1
    assert "exit code 1" in result.problem and "not quantized" in result.problem.lower()


def test_exit_0_without_an_output_model_is_a_failure(fake_compiler, model, monkeypatch) -> None:
    result = compile_with("no-output", fake_compiler, model, monkeypatch)
    assert not result.succeeded and "wrote no model_int8_edgetpu.tflite" in result.problem


def test_zero_edgetpu_subgraphs_is_a_failure_even_with_exit_0(fake_compiler, model, monkeypatch) -> None:
    result = compile_with("partial", fake_compiler, model, monkeypatch)
    assert result.exit_code == 0 and result.compiled_models
    assert not result.succeeded and "no Edge TPU subgraph" in result.problem


def test_garbage_output_is_tolerated_and_judged_a_failure(fake_compiler, model, monkeypatch) -> None:
    result = compile_with("garbage", fake_compiler, model, monkeypatch)
    assert result.exit_code == 0 and not result.succeeded
    assert result.output.ops == []


def test_timeout_kills_the_whole_process_group(fake_compiler, model, monkeypatch) -> None:
    before = {p.pid for p in psutil.process_iter()}
    start = time.monotonic()
    result = compile_with("hang", fake_compiler, model, monkeypatch, timeout_sec=1)
    assert time.monotonic() - start < 20
    assert result.exit_code is None and "was killed" in result.problem
    time.sleep(0.2)
    assert _sleepers(before) == []


def test_find_compiler_prefers_configured_then_env_then_path(fake_compiler, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_compiler(None) is None
    monkeypatch.setenv("PATH", str(fake_compiler.parent) + os.pathsep + str(tmp_path / "empty"))
    assert find_compiler(None) == fake_compiler
    other = tmp_path / "other_compiler"
    other.write_bytes(fake_compiler.read_bytes())
    other.chmod(0o755)
    monkeypatch.setenv(ENV_VAR, str(other))
    assert find_compiler(None) == other
    assert find_compiler(fake_compiler) == fake_compiler


def test_a_configured_compiler_that_is_not_there_is_bad_input(tmp_path) -> None:
    with pytest.raises(BadInputError, match="not an executable file") as raised:
        find_compiler(tmp_path / "nope")
    assert raised.value.exit_code == 2


def test_version_is_read_from_the_compiler(fake_compiler) -> None:
    assert compiler_version(fake_compiler) == "16.0.384591198"


# --- a compiler that misbehaves: floods its output, leaves processes behind, links out of its folder ---


def _sleepers(before: set[int]) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["pid", "cmdline"]) if p.info["pid"] not in before
            and "time.sleep(600)" in " ".join(p.info["cmdline"] or [])]  # fmt: skip


def test_a_flood_streams_to_a_capped_file_and_the_verdict_survives(fake_compiler, model, monkeypatch) -> None:
    flood_mb = 200
    monkeypatch.setenv("FAKE_EDGETPU_FLOOD_MB", str(flood_mb))  # noise, not even UTF-8, then a normal summary
    tracemalloc.start()
    try:
        result = compile_with("flood", fake_compiler, model, monkeypatch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < (flood_mb << 20) / 4, f"{peak} bytes held for a {flood_mb} MB flood"
    assert result.stdout_path.stat().st_size <= HEAD_BYTES + TAIL_BYTES + 100
    assert "bytes of output left out here" in result.stdout_path.read_text(errors="replace")
    assert result.succeeded, result.problem  # the summary at the end was kept, the op table of the huge .log read
    assert result.output.edgetpu_subgraphs == 1 and result.output.ops


def test_the_version_is_read_from_a_flood_of_bytes_that_are_not_utf8(fake_compiler, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_EDGETPU_MODE", "flood")
    monkeypatch.setenv("FAKE_EDGETPU_FLOOD_MB", "20")
    assert compiler_version(fake_compiler) == "16.0.384591198"


def test_processes_left_holding_the_output_neither_stall_ckit_nor_survive(fake_compiler, model, monkeypatch) -> None:
    before = {p.pid for p in psutil.process_iter()}
    result = compile_with("orphan", fake_compiler, model, monkeypatch, timeout_sec=5)
    assert result.succeeded, result.problem  # not "did not finish": its exit is the end of the run
    time.sleep(0.2)
    assert _sleepers(before) == []


def test_a_compiled_model_linking_out_of_the_output_folder_is_not_taken(fake_compiler, model, monkeypatch) -> None:
    result = compile_with("escape", fake_compiler, model, monkeypatch)
    assert result.compiled_models == [] and not result.succeeded
    assert "wrote no model_int8_edgetpu.tflite" in result.problem
