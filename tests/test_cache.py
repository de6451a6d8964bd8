"""StageCache: entries keyed by content, verified before use, stored whole, shared safely between builds."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compiler_kit.cache import ENTRY_JSON, FILES, RETRY, StageCache, resolve_files, stage_key


def _make(files: Path) -> dict:
    (files / "model.tflite").write_bytes(b"int8 model")
    (files / "saved_model").mkdir()
    (files / "saved_model" / "saved_model.pb").write_bytes(b"graph")
    return {"where": str(files / "model.tflite"), "signature": "serving_default"}


def test_a_stored_entry_is_found_verified_and_its_paths_follow_it(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    cache.prepare()
    assert cache.lookup("quantize", "k1").status == "miss"
    stored = cache.produce("quantize", "k1", _make)
    found = cache.lookup("quantize", "k1")
    assert found.status == "hit" and found.entry == stored
    assert (found.entry.files / "saved_model" / "saved_model.pb").read_bytes() == b"graph"
    # Paths into the staging folder are stored relative to the entry's files: they resolve wherever those go.
    assert resolve_files(found.entry.meta, tmp_path / "build")["where"] == str(tmp_path / "build" / "model.tflite")
    assert list((tmp_path / "tmp").iterdir()) == []  # the staging folder became the entry


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda e: (e / FILES / "model.tflite").write_bytes(b"int8 modeL"), "model.tflite: hash mismatch"),
        (lambda e: (e / FILES / "saved_model" / "saved_model.pb").unlink(), "saved_model/saved_model.pb is missing"),
        (lambda e: (e / FILES / "stray.bin").write_bytes(b""), "unexpected file stray.bin"),
        (lambda e: (e / ENTRY_JSON).write_text("{truncated"), "entry.json unreadable"),
    ],
    ids=["flipped-byte", "missing-file", "extra-file", "bad-entry-json"],
)
def test_a_damaged_entry_is_corrupt_and_is_replaced_when_produced_again(tmp_path: Path, damage, problem) -> None:
    cache = StageCache(tmp_path)
    cache.prepare()
    entry = cache.produce("quantize", "k1", _make)
    damage(entry.path)
    found = cache.lookup("quantize", "k1")
    assert found.status == "corrupt" and found.entry is None and problem in found.problem and found.replace
    cache.produce("quantize", "k1", _make, replace=found.replace)
    assert cache.lookup("quantize", "k1").status == "hit"


def test_force_never_reuses_an_entry_but_replaces_it(tmp_path: Path) -> None:
    StageCache(tmp_path).produce("convert", "k", _make)
    forced = StageCache(tmp_path, force=True)
    assert forced.lookup("convert", "k").status == "forced"
    assert forced.lookup("convert", "other").status == "miss"
    forced.produce("convert", "k", lambda files: {"second": True}, replace=forced.lookup("convert", "k").replace)
    assert StageCache(tmp_path).lookup("convert", "k").entry.meta == {"second": True}


def test_a_failing_stage_stores_nothing_and_leaves_no_staging_folder(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    cache.prepare()

    def fail(files: Path) -> dict:
        (files / "half.tflite").write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.produce("quantize", "k", fail)
    assert cache.lookup("quantize", "k").status == "miss"
    assert list((tmp_path / "tmp").iterdir()) == []


def test_staging_folders_of_dead_processes_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "tmp" / f"{dead.stdout.strip()}-abc").mkdir(parents=True)
    (tmp_path / "tmp" / f"{os.getpid()}-def").mkdir()
    StageCache(tmp_path).prepare()
    assert [p.name for p in (tmp_path / "tmp").iterdir()] == [f"{os.getpid()}-def"]


def _store_in_child(root: str) -> str:
    cache = StageCache(Path(root))
    cache.prepare()
    return str(cache.produce("quantize", "same-key", _make).path)


def test_builds_storing_the_same_key_at_once_all_get_a_good_entry(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        paths = pool.map(_store_in_child, [str(tmp_path)] * 8)
    assert set(paths) == {str(tmp_path / "quantize" / "same-key")}
    assert StageCache(tmp_path).lookup("quantize", "same-key").status == "hit"
    assert [p.name for p in (tmp_path / "tmp").iterdir()] == []


def test_keys_change_with_every_input_and_only_with_them() -> None:
    base = {"model": "abc", "section": {"granularity": "per-channel"}}
    assert stage_key("quantize", base) == stage_key("quantize", json.loads(json.dumps(base)))
    assert stage_key("quantize", base) != stage_key("convert", base)
    assert stage_key("quantize", base) != stage_key("quantize", {**base, "section": {"granularity": "per-tensor"}})


def test_an_outcome_marked_retry_is_stored_but_never_reused(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    cache.produce("edgetpu", "k", lambda files: {"section": {"exit_code": None}, RETRY: True})  # killed compiler
    assert cache.lookup("edgetpu", "k").status == "miss"
    cache.produce("edgetpu", "k", lambda files: {"section": {"exit_code": 0}, RETRY: False}, replace=True)
    assert cache.lookup("edgetpu", "k").entry.meta["section"] == {"exit_code": 0}


def test_an_entry_stored_meanwhile_by_another_build_is_kept_not_replaced(tmp_path: Path) -> None:
    """Two builds miss one key and both produce it: the second must not pull the first's entry from under it."""
    cache = StageCache(tmp_path)
    first = cache.produce("convert", "k", lambda files: {"first": True})
    second = cache.produce("convert", "k", lambda files: {"second": True})  # a plain miss: replace=False
    assert second.meta == {"first": True} and first.path == second.path and (first.path / "entry.json").is_file()
