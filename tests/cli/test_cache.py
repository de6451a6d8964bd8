"""`ckit cache info | prune | clear` on a cache filled through StageCache itself."""

from __future__ import annotations

import os
import time
from pathlib import Path

from typer.testing import CliRunner

from compiler_kit.cache import ENTRY_JSON, StageCache
from compiler_kit.cli import app


def ckit(*args: str):
    return CliRunner().invoke(app, list(args))


def _model_of(size: int):
    def make(files: Path) -> dict:
        (files / "model.bin").write_bytes(b"x" * size)
        return {}

    return make


def _filled(root: Path) -> StageCache:
    cache = StageCache(root)
    for stage, key, size in (("convert", "a", 3000), ("quantize", "b", 1000), ("quantize", "c", 500)):
        cache.produce(stage, key, _model_of(size))
    return cache


def _age(root: Path, stage: str, key: str, days: float) -> None:
    then = time.time() - days * 86400
    os.utime(root / stage / key / ENTRY_JSON, (then, then))


def test_info_counts_entries_and_bytes_per_stage(tmp_path: Path) -> None:
    _filled(tmp_path)
    result = ckit("cache", "info", "--cache-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{tmp_path}: 3 entries, 0.0 MiB"
    assert lines[1].split() == ["convert", "1", "entries", "0.0", "MiB"]
    assert lines[2].split() == ["quantize", "2", "entries", "0.0", "MiB"]


def test_prune_removes_what_no_build_reused_lately_and_a_reuse_keeps_an_entry(tmp_path: Path) -> None:
    cache = _filled(tmp_path)
    for key, stage in (("a", "convert"), ("b", "quantize"), ("c", "quantize")):
        _age(tmp_path, stage, key, 40)
    assert cache.lookup("quantize", "b").status == "hit"  # reused now: no longer 40 days old
    result = ckit("cache", "prune", "--older-than-days", "30", "--cache-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("removed 2 entries")
    assert [(e.stage, e.path.name) for e in cache.entries()] == [("quantize", "b")]
    assert cache.lookup("convert", "a").status == "miss"


def test_clear_removes_every_entry(tmp_path: Path) -> None:
    cache = _filled(tmp_path)
    result = ckit("cache", "clear", "--cache-dir", str(tmp_path))
    assert result.exit_code == 0 and result.output.startswith("removed 3 entries")
    assert cache.entries() == []
