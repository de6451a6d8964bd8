"""The stage cache: every stage's artifacts, keyed by a content hash of everything the stage depends on.

A key is the sha256 of a JSON document of the stage's inputs: the bytes of the files it reads (as their hashes),
its resolved recipe section, the data sets' hashes, the versions of the tools it runs and the hash of ckit's own
code, so a change to any of them is a different key and nothing stale is ever reused.

Layout: `<root>/<stage>/<key>/entry.json` (the stage's metadata and the sha256 of each of its files) beside
`<root>/<stage>/<key>/files/`. An entry is built in `<root>/tmp/<pid>-<random>/` and renamed into place whole,
so readers see a complete entry or none, whichever of two concurrent builds finishes first; the loser's copy is
dropped. Every file is hashed again before an entry is used: a mismatch (a disk error, a hand edit) marks the
entry corrupt, and the stage runs again and replaces it. Staging folders of processes that died (SIGKILL) are
removed by the next build.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from compiler_kit.artifacts import sha256_file

ENTRY_JSON, FILES = "entry.json", "files"
RETRY = "retry"  # metadata flag of an outcome not to reuse (a compiler killed at its timeout may finish next time)
_FILES_PLACEHOLDER = "${files}"  # stands for the entry's files folder in stored metadata
_CODE_ROOT = Path(__file__).resolve().parent


def default_root() -> Path:
    """$CKIT_CACHE_DIR, else $XDG_CACHE_HOME/ckit, else ~/.cache/ckit."""
    if configured := os.environ.get("CKIT_CACHE_DIR"):
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ckit"


@cache
def code_sha256() -> str:
    """Hash of ckit's own source: a changed stage implementation never reuses an old entry."""
    digest = hashlib.sha256()
    for path in sorted(_CODE_ROOT.rglob("*.py")):
        digest.update(str(path.relative_to(_CODE_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def stage_key(stage: str, inputs: dict[str, Any]) -> str:
    document = {"stage": stage, "ckit": code_sha256(), **inputs}
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    path: Path
    meta: dict[str, Any]

    @property
    def files(self) -> Path:
        return self.path / FILES


@dataclass(frozen=True)
class StoredEntry:
    path: Path  # <root>/<stage>/<key>
    bytes: int
    last_used: float  # seconds since the epoch: when it was stored or last reused

    @property
    def stage(self) -> str:
        return self.path.parent.name


@dataclass(frozen=True)
class Lookup:
    """What a stage found in the cache: a verified entry (`hit`), nothing (`miss`), or a corrupt entry."""

    status: str  # "hit", "miss", "corrupt" or "forced" (--force: an entry exists and is rebuilt anyway)
    entry: Entry | None = None
    problem: str = ""
    replace: bool = False  # an entry is stored under the key and must make way for the new one


class StageCache:
    def __init__(self, root: Path, *, force: bool = False) -> None:
        self.root = root
        self.force = force

    def prepare(self) -> None:
        """Remove what builds that died (SIGKILL) left in the staging area."""
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        for staging in (self.root / "tmp").iterdir():
            if not _owner_alive(staging.name):
                shutil.rmtree(staging, ignore_errors=True)

    def lookup(self, stage: str, key: str) -> Lookup:
        path = self.root / stage / key
        if not path.exists():
            return Lookup("miss")
        if self.force:
            return Lookup("forced", replace=True)
        try:
            document = json.loads((path / ENTRY_JSON).read_text())
            problem = _first_mismatch(path / FILES, document["files"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problem = f"{ENTRY_JSON} unreadable ({exc})"
        if problem:
            return Lookup("corrupt", problem=problem, replace=True)
        if document["meta"].get(RETRY):
            return Lookup("miss", replace=True)
        os.utime(path / ENTRY_JSON)  # its time is the entry's last use: `ckit cache prune` goes by it
        return Lookup("hit", Entry(path, document["meta"]))

    def entries(self) -> list[StoredEntry]:
        """Every stored entry, oldest use first."""
        found = []
        for entry_json in self.root.glob(f"*/*/{ENTRY_JSON}"):
            files = entry_json.parent / FILES
            size = sum(p.stat().st_size for p in files.rglob("*") if p.is_file())
            found.append(StoredEntry(entry_json.parent, size, entry_json.stat().st_mtime))
        return sorted(found, key=lambda entry: entry.last_used)

    def remove(self, entry: StoredEntry) -> None:
        _discard(entry.path, self.root / "tmp")

    def produce(self, stage: str, key: str, make: Callable[[Path], dict[str, Any]], replace: bool = False) -> Entry:
        """Store the entry for `key`: `make` fills a fresh files folder and returns the metadata (JSON). `replace`:
        the stored entry must make way (Lookup.replace); otherwise an entry that appeared meanwhile is another build's,
        as good as this one, and is kept (discarding it would pull it from under that build while it copies it)."""
        with self._staging() as staging:
            files = staging / FILES
            files.mkdir()
            meta = make(files)
            return self._store(stage, key, staging, meta, replace)

    @contextlib.contextmanager
    def _staging(self) -> Iterator[Path]:
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.root / "tmp", prefix=f"{os.getpid()}-"))
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _store(self, stage: str, key: str, staging: Path, meta: dict[str, Any], replace: bool) -> Entry:
        files = staging / FILES
        hashes = {str(p.relative_to(files)): sha256_file(p) for p in sorted(files.rglob("*")) if p.is_file()}
        text = json.dumps({"stage": stage, "key": key, "files": hashes, "meta": meta}, indent=1, default=str)
        (staging / ENTRY_JSON).write_text(text.replace(str(files), _FILES_PLACEHOLDER))
        final = self.root / stage / key
        final.parent.mkdir(parents=True, exist_ok=True)
        if replace and final.exists():  # corrupt, forced or retried: move it aside, the rename needs the name free
            _discard(final, self.root / "tmp")
        try:
            staging.rename(final)
        except OSError:  # another build stored the same key first: keep theirs, it is as good as ours
            if not final.exists():
                raise
        return Entry(final, json.loads((final / ENTRY_JSON).read_text())["meta"])


def resolve_files(meta: Any, files: Path) -> Any:
    """`meta` with the stored placeholder for the entry's files folder replaced by `files` (where they are now)."""
    return json.loads(json.dumps(meta).replace(_FILES_PLACEHOLDER, str(files)))


def _first_mismatch(files: Path, expected: dict[str, str]) -> str:
    present = {str(p.relative_to(files)) for p in files.rglob("*") if p.is_file()}
    if extra := sorted(present - set(expected)):
        return f"unexpected file {extra[0]}"
    for name, sha256 in expected.items():
        path = files / name
        if not path.is_file():
            return f"{name} is missing"
        if sha256_file(path) != sha256:
            return f"{name}: hash mismatch"
    return ""


def _discard(path: Path, tmp: Path) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    aside = Path(tempfile.mkdtemp(dir=tmp, prefix=f"{os.getpid()}-discard-"))
    with contextlib.suppress(FileNotFoundError):  # another build discarded it first
        path.rename(aside / path.name)
    shutil.rmtree(aside, ignore_errors=True)


def _owner_alive(staging_name: str) -> bool:
    pid = staging_name.split("-", 1)[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
