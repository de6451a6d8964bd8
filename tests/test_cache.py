"""StageCache: entries keyed by content, verified before use, stored whole, shared safely between builds."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from compiler_kit.cache import ENTRY_JSON, FILES, RETRY, StageCache, resolve_files, stage_key
from tests.conftest import REPO, in_mount_namespace, quoted


def _make(files: Path) -> dict:
    (files / "model.tflite").write_bytes(b"int8 model")
    (files / "saved_model").mkdir()
    (files / "saved_model" / "saved_model.pb").write_bytes(b"graph")
    return {
        "where": str(files / "model.tflite"),
        "signature": "serving_default",
        "p50_ms": 0.25,
        "ops": [{"operator": "CONV_2D", "mapped": True}],
    }


def read_only(folders: list[Path], command: list[str]) -> list[str]:
    """`command` run where each of `folders` is a read-only bind mount of itself: a real read-only file system."""
    return in_mount_namespace(" && ".join(f"mount --bind -o ro {quoted(f)} {quoted(f)}" for f in folders), command)


def _edit_entry(change: Callable[[dict[str, Any]], object]) -> Callable[[Path], None]:
    """A damage that rewrites an entry's entry.json as valid JSON: `change` edits the parsed document in place."""

    def damage(entry: Path) -> None:
        document = json.loads((entry / ENTRY_JSON).read_text())
        change(document)
        (entry / ENTRY_JSON).write_text(json.dumps(document, indent=1))

    return damage


def test_a_stored_entry_is_found_verified_and_its_paths_follow_it(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    with cache.for_build(tmp_path):
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
        (lambda e: (e / ENTRY_JSON).write_text((e / ENTRY_JSON).read_text()[:200]), "entry.json unreadable"),
        # The metadata is verified like the files: a changed measurement is never reported as measured.
        (_edit_entry(lambda d: d["meta"].update(p50_ms=0.5)), "metadata: hash mismatch"),
        (_edit_entry(lambda d: d["meta"]["ops"][0].update(operator="RELU")), "metadata: hash mismatch"),
        (_edit_entry(lambda d: d["meta"].update(signature_key=d["meta"].pop("signature"))), "metadata: hash mismatch"),
        (_edit_entry(lambda d: d.update(meta=list(d["meta"].values()))), "entry.json does not describe an entry"),
        (_edit_entry(lambda d: d.pop("meta_sha256")), "metadata: hash mismatch"),
    ],
    ids=[
        "flipped-byte",
        "missing-file",
        "extra-file",
        "truncated-entry-json",
        "meta-number",
        "meta-op-name",
        "meta-key",
        "meta-a-list",
        "meta-hash-gone",
    ],
)
def test_a_damaged_entry_is_corrupt_and_is_replaced_when_produced_again(tmp_path: Path, damage, problem) -> None:
    cache = StageCache(tmp_path)
    with cache.for_build(tmp_path):
        entry = cache.produce("quantize", "k1", _make)
        damage(entry.path)
        found = cache.lookup("quantize", "k1")
        assert found.status == "corrupt" and found.entry is None and problem in found.problem and found.replace
        cache.produce("quantize", "k1", _make, replace=found.replace)
    again = cache.lookup("quantize", "k1")
    assert again.status == "hit" and again.entry.meta["p50_ms"] == 0.25


def test_force_never_reuses_an_entry_but_replaces_it(tmp_path: Path) -> None:
    StageCache(tmp_path).produce("convert", "k", _make)
    forced = StageCache(tmp_path, force=True)
    assert forced.lookup("convert", "k").status == "forced"
    assert forced.lookup("convert", "other").status == "miss"
    forced.produce("convert", "k", lambda files: {"second": True}, replace=forced.lookup("convert", "k").replace)
    assert StageCache(tmp_path).lookup("convert", "k").entry.meta == {"second": True}


def test_a_failing_stage_stores_nothing_and_leaves_no_staging_folder(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)

    def fail(files: Path) -> dict:
        (files / "half.tflite").write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), cache.for_build(tmp_path):
        cache.produce("quantize", "k", fail)
    assert cache.lookup("quantize", "k").status == "miss"
    assert list((tmp_path / "tmp").iterdir()) == []


def test_staging_folders_of_dead_processes_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "tmp" / f"{dead.stdout.strip()}-abc").mkdir(parents=True)
    (tmp_path / "tmp" / f"{os.getpid()}-def").mkdir()
    with StageCache(tmp_path).for_build(tmp_path):
        pass
    assert [p.name for p in (tmp_path / "tmp").iterdir()] == [f"{os.getpid()}-def"]


def _store_in_child(root: str) -> str:
    cache = StageCache(Path(root))
    with cache.for_build(Path(root)):
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


# --- A cache that cannot be written: the build goes on uncached or reads it read only, after one warning. ---


def test_a_file_where_the_cache_should_be_means_no_cache_and_one_warning(tmp_path: Path) -> None:
    root, build, warnings = tmp_path / "cache", tmp_path / "build", []
    root.write_text("not a folder")
    build.mkdir()
    cache = StageCache(root, warn=warnings.append)
    with cache.for_build(build):
        assert cache.lookup("quantize", "k").status == "miss"
        entry = cache.produce("quantize", "k", _make)
        again = cache.produce("verify", "k", _make)
        assert (entry.files / "saved_model" / "saved_model.pb").read_bytes() == b"graph"  # usable during the build
        assert resolve_files(entry.meta, build)["where"] == str(build / "model.tflite")  # stored form, all the same
        assert entry.path.is_relative_to(build) and again.path.is_relative_to(build)
    assert [str(w) for w in warnings] == [
        f"the stage cache {root} cannot be written ({root} is a file): building every stage without it; "
        "fix: make it a folder you can write, or set --cache-dir or CKIT_CACHE_DIR to one"
    ]
    assert root.read_text() == "not a folder" and list(build.iterdir()) == []  # the temporary entries are gone


def test_a_file_in_place_of_a_stage_folder_stops_storing_with_one_warning(tmp_path: Path) -> None:
    warnings: list[str] = []
    cache = StageCache(tmp_path / "cache", warn=warnings.append)
    with cache.for_build(tmp_path):
        cache.produce("convert", "k", _make)
        (tmp_path / "cache" / "quantize").write_text("in the way")
        entry = cache.produce("quantize", "k", _make)
        assert (entry.files / "model.tflite").read_bytes() == b"int8 model"
        cache.produce("verify", "k", _make)  # the cache said it takes no more: no second warning
        assert cache.lookup("convert", "k").status == "hit"
    assert len(warnings) == 1 and f"({tmp_path / 'cache' / 'quantize'} is a file)" in warnings[0]
    assert "reusing its entries but storing no new ones" in warnings[0]
    assert cache.lookup("verify", "k").status == "miss"
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []  # what could not be stored went with the build


def test_a_warm_cache_that_cannot_be_written_is_read_but_never_touched(tmp_path: Path) -> None:
    root, warnings = tmp_path / "cache", []
    stored = StageCache(root).produce("convert", "k", _make)
    os.utime(stored.path / ENTRY_JSON, (1_000_000, 1_000_000))
    (root / "tmp").rmdir()
    (root / "tmp").write_text("in the way")  # where entries are built: the cache can be read, not written
    cache = StageCache(root, warn=warnings.append)
    with cache.for_build(tmp_path):
        found = cache.lookup("convert", "k")
        assert found.status == "hit" and found.entry == stored
        cache.produce("quantize", "k", _make)
    assert len(warnings) == 1 and "reusing its entries but storing no new ones" in warnings[0]
    assert (stored.path / ENTRY_JSON).stat().st_mtime == 1_000_000  # its last use is not this build's
    assert cache.lookup("quantize", "k").status == "miss"


_WARN_IN_A_STAGE = """
import sys
from pathlib import Path
from compiler_kit import lazy
from compiler_kit.cache import StageCache
cache = StageCache(Path(sys.argv[1]))
if sys.argv[3] == "stage":
    with lazy.native_output_to(Path(sys.argv[2])):  # what StageLog does for every stage
        cache.warn("the cached quantize entry is corrupt")
else:
    cache.warn("the cached quantize entry is corrupt")
"""


@pytest.mark.parametrize("where", ["stage", "between-stages"])
def test_a_warning_reaches_the_stderr_the_build_started_with(tmp_path: Path, where: str) -> None:
    """A stage sends file descriptor 2 to the build log (TensorFlow's C++ lines), and the cache warns during a stage:
    the warning went only to build.log, so `ckit build` never said an entry was corrupt or the cache unwritable. In
    a real process: a test runner's captured sys.stderr never goes through fd 2. Once on stderr, in or out of one."""
    log = tmp_path / "build.log"
    command = [sys.executable, "-c", _WARN_IN_A_STAGE, str(tmp_path / "cache"), str(log), where]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "warning: the cached quantize entry is corrupt\n"
    assert (log.read_text() if log.exists() else "") == (done.stderr if where == "stage" else "")


_LOOK_UP = """
import json, sys
from pathlib import Path
from compiler_kit.cache import StageCache
root, build = Path(sys.argv[1]), Path(sys.argv[2])
warnings = []
cache = StageCache(root, warn=warnings.append)
with cache.for_build(build):
    found = cache.lookup("convert", "k")
    made = cache.produce("quantize", "k", lambda files: {"made": True})
    print(json.dumps({"found": found.status, "made": made.meta, "warnings": warnings}))
"""


def test_a_read_only_file_system_is_read_and_what_it_lacks_is_built_uncached(tmp_path: Path) -> None:
    root, build = tmp_path / "cache", tmp_path / "build"
    stored = StageCache(root).produce("convert", "k", _make)
    build.mkdir()
    before = (stored.path / ENTRY_JSON).stat().st_mtime_ns
    done = subprocess.run(
        read_only([root], [sys.executable, "-c", _LOOK_UP, str(root), str(build)]), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["found"] == "hit" and seen["made"] == {"made": True}
    [warning] = seen["warnings"]
    assert f"({root / 'tmp'}: Read-only file system): reusing its entries but storing no new ones" in warning
    assert (stored.path / ENTRY_JSON).stat().st_mtime_ns == before
    assert not (root / "quantize").exists() and list(build.iterdir()) == []


def test_an_entry_on_a_read_only_mount_is_reused_though_its_use_cannot_be_recorded(tmp_path: Path) -> None:
    """The cache can be written, but this entry's folder cannot: os.utime gets EROFS, and that costs nothing."""
    root, build = tmp_path / "cache", tmp_path / "build"
    stored = StageCache(root).produce("convert", "k", _make)
    build.mkdir()
    done = subprocess.run(
        read_only([root / "convert"], [sys.executable, "-c", _LOOK_UP, str(root), str(build)]),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"found": "hit", "made": {"made": True}, "warnings": []}
    assert StageCache(root).lookup("quantize", "k").entry.meta == {"made": True}  # stored: the cache is writable
    assert stored.path.is_dir()
