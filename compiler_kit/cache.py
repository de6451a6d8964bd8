"""The stage cache: every stage's artifacts, keyed by a content hash of everything the stage depends on.

A key is the sha256 of a JSON document of the stage's inputs: the bytes of the files it reads (as their hashes),
its resolved recipe section, the data sets' hashes, the versions of the tools it runs and the hash of ckit's own
code, so a change to any of them is a different key and nothing stale is ever reused.

Layout: `<root>/<stage>/<key>/entry.json` (the stage's metadata, its hash and the sha256 of each of its files)
beside `<root>/<stage>/<key>/files/`. An entry is built in `<root>/tmp/<pid>-<random>/` and renamed into place
whole, so readers see a complete entry or none, whichever of two concurrent builds finishes first; the loser's
copy is dropped. The files and the metadata are hashed again before an entry is used: a mismatch (a disk error, a
hand edit) marks the entry corrupt, and the stage runs again and replaces it. Staging folders of processes that
died (SIGKILL) are removed by the next build.

A cache that cannot be written (a read-only file system, such as a CI cache restored read only; a file in the way;
no permission) is still read: a build reuses its entries, builds the others in a temporary folder and stores
nothing, after one warning on stderr.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from compiler_kit.artifacts import process_alive, sha256_file
from compiler_kit.errors import disk_full_as, tree_bytes

ENTRY_JSON, FILES = "entry.json", "files"
RETRY = "retry"  # metadata flag of an outcome not to reuse (a compiler killed at its timeout may finish next time)
_FILES_PLACEHOLDER = "${files}"  # stands for the entry's files folder in stored metadata
_CODE_ROOT = Path(__file__).resolve().parent
_UNTOUCHABLE = (errno.EROFS, errno.EPERM, errno.EACCES)  # a read-only file system, another user's entry

Warn = Callable[[str], None]


def warn_on_stderr(message: str) -> None:
    """Where the cache's warnings go: stderr, like every `warning:` of ckit, even with --quiet (a cache that
    stores nothing or an entry found damaged is worth knowing about whether or not progress is shown).

    Most are met during a stage, while file descriptor 2 is sent to the build log (lazy.native_output_to keeps
    TensorFlow's C++ lines out of the terminal): the warning goes to the log, and also to the stderr the build
    started with, or the user would never see it."""
    line = f"warning: {message}"
    print(line, file=sys.stderr, flush=True)
    original = _stderr_at_start()
    if original is not None and _is_fd2(sys.stderr) and not _same_file(2, original):
        _write_all(original, f"{line}\n".encode(errors="backslashreplace"))


@cache
def _stderr_at_start() -> int | None:
    """A duplicate of file descriptor 2 as the first StageCache found it (a build makes its cache before any stage
    redirects fd 2); None when there is no fd 2."""
    try:
        return os.dup(2)
    except OSError:
        return None


def _is_fd2(stream: Any) -> bool:
    """Whether `stream` writes to file descriptor 2 (not so under a test runner's captured stream)."""
    try:
        return bool(stream.fileno() == 2)
    except (AttributeError, OSError, ValueError):
        return False


def _same_file(fd: int, other: int) -> bool:
    try:
        first, second = os.fstat(fd), os.fstat(other)
    except OSError:
        return True  # nothing to compare: write once
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def _write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):  # a closed terminal: the log still has the warning
        while data:
            data = data[os.write(fd, data) :]


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
    def __init__(self, root: Path, *, force: bool = False, warn: Warn = warn_on_stderr) -> None:
        self.root = root
        self.force = force
        self.warn = warn
        _stderr_at_start()  # now, before a stage sends fd 2 to the build log
        self.writable = True  # False once storing has failed: entries are still read, never stored or touched
        self._tmp = root / "tmp"  # where entries are built
        self._temporary: list[Path] = []  # what this build made and the cache could not take: gone when it ends

    @contextlib.contextmanager
    def for_build(self, scratch: Path) -> Iterator[None]:
        """The cache for one build. One that cannot be written is only read (one warning says why); the entries it
        cannot take are built in a temporary folder in `scratch` (the build folder, whose next build removes it
        should this one be killed) and removed when the build ends."""
        self._open_staging(scratch)
        try:
            yield
        finally:
            for path in self._temporary:
                shutil.rmtree(path, ignore_errors=True)
            self._temporary.clear()

    def _open_staging(self, scratch: Path) -> None:
        """Find out whether entries can be stored; remove what builds that died (SIGKILL) left in the staging area."""
        self.writable, self._tmp = True, self.root / "tmp"
        try:
            _check_writable(self._tmp)
        except OSError as exc:
            self._stop_storing(self._tmp, exc)
            self._tmp = Path(tempfile.mkdtemp(dir=scratch, prefix=".ckit-cache.", suffix=".tmp"))
            self._temporary.append(self._tmp)
            return
        for staging in self._tmp.iterdir():
            if not _owner_alive(staging.name):
                shutil.rmtree(staging, ignore_errors=True)

    def _stop_storing(self, folder: Path, exc: OSError) -> None:
        """Store nothing more in this build, and say why, once."""
        self.writable = False
        readable = os.path.isdir(self.root) and os.access(self.root, os.R_OK | os.X_OK)
        then = "reusing its entries but storing no new ones" if readable else "building every stage without it"
        self.warn(
            f"the stage cache {self.root} cannot be written ({_why(folder, exc)}): {then}; "
            "fix: make it a folder you can write, or set --cache-dir or CKIT_CACHE_DIR to one"
        )

    def lookup(self, stage: str, key: str) -> Lookup:
        path = self.root / stage / key
        if not os.path.exists(path):  # not Path.exists: a folder this user cannot read is a miss, not an error
            return Lookup("miss")
        if self.force:
            return Lookup("forced", replace=True)
        meta, problem = _verified(path)
        if problem:
            return Lookup("corrupt", problem=problem, replace=True)
        if meta.get(RETRY):
            return Lookup("miss", replace=True)
        if self.writable:  # a cache this build does not write, it does not touch either
            _touch(path / ENTRY_JSON)
        return Lookup("hit", Entry(path, meta))

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
        as good as this one, and is kept (discarding it would pull it from under that build while it copies it).
        An entry the cache cannot take stays where it was built until the build ends."""
        with self._staging() as staging:
            files = staging / FILES
            files.mkdir()
            free = shutil.disk_usage(staging).free

            def least() -> int:  # more than was free when it began, and than it had written when the disk filled
                return max(free, tree_bytes(files))

            with disk_full_as(staging.parent, f"running the {stage} stage", least, at_least=True):
                meta = _seal(staging, stage, key, make(files))
            if self.writable and (stored := self._store(stage, key, staging, replace)):
                return stored
            self._temporary.append(staging)
            return Entry(staging, meta)

    @contextlib.contextmanager
    def _staging(self) -> Iterator[Path]:
        self._tmp.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self._tmp, prefix=f"{os.getpid()}-"))
        try:
            yield staging
        finally:
            if staging not in self._temporary:  # stored, or the stage failed
                shutil.rmtree(staging, ignore_errors=True)

    def _store(self, stage: str, key: str, staging: Path, replace: bool) -> Entry | None:
        """Move the sealed entry into place; None when the cache cannot take it (then it takes no more)."""
        final = self.root / stage / key
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            if replace and final.exists():  # corrupt, forced or retried: move it aside, the rename needs the name free
                _discard(final, self.root / "tmp")
            try:
                staging.rename(final)
            except OSError:  # another build stored the same key first: keep theirs, it is as good as ours
                if not final.exists():
                    raise
        except OSError as exc:
            self._stop_storing(final.parent, exc)
            return None
        return Entry(final, json.loads((final / ENTRY_JSON).read_text())["meta"])


def resolve_files(meta: Any, files: Path) -> Any:
    """`meta` with the stored placeholder for the entry's files folder replaced by `files` (where they are now)."""
    return json.loads(json.dumps(meta).replace(_FILES_PLACEHOLDER, str(files)))


def _seal(staging: Path, stage: str, key: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Write the staged entry's entry.json: the hash of each file, and the metadata as stored (its paths into the
    files folder as a placeholder, since the files move) with its own hash, so that a changed measurement fails
    verification like a changed file. Returns the metadata as stored."""
    files = staging / FILES
    hashes = {str(p.relative_to(files)): sha256_file(p) for p in sorted(files.rglob("*")) if p.is_file()}
    stored = json.loads(json.dumps(meta, default=str).replace(str(files), _FILES_PLACEHOLDER))
    document = {"stage": stage, "key": key, "files": hashes, "meta_sha256": _meta_sha256(stored), "meta": stored}
    (staging / ENTRY_JSON).write_text(json.dumps(document, indent=1))
    return stored


def _meta_sha256(meta: Any) -> str:
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()


def _verified(path: Path) -> tuple[dict[str, Any], str]:
    """The entry's metadata, and what is wrong with the entry ("" when its files and metadata are as stored)."""
    try:
        document = json.loads((path / ENTRY_JSON).read_text())
    except (OSError, ValueError) as exc:
        return {}, f"{ENTRY_JSON} unreadable ({exc})"
    if not isinstance(document, dict) or not all(isinstance(document.get(k), dict) for k in ("files", "meta")):
        return {}, f"{ENTRY_JSON} does not describe an entry (no files and metadata objects)"
    if document.get("meta_sha256") != _meta_sha256(document["meta"]):
        return {}, "metadata: hash mismatch"
    try:
        return document["meta"], _first_mismatch(path / FILES, document["files"])
    except OSError as exc:
        return {}, f"files unreadable ({exc})"


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


def _touch(path: Path) -> None:
    """Mark the entry used now: `ckit cache prune` goes by it. A read-only file system or another user's entry
    keeps its old time, which costs only its place in the prune order."""
    try:
        os.utime(path)
    except OSError as exc:
        if exc.errno not in _UNTOUCHABLE:
            raise


def _check_writable(folder: Path) -> None:
    """Raise the OSError that storing under `folder` meets (a read-only file system, a file in the way, no
    permission). mkdir alone proves nothing: it succeeds on a folder that exists on a read-only file system."""
    folder.mkdir(parents=True, exist_ok=True)
    Path(tempfile.mkdtemp(dir=folder, prefix=f"{os.getpid()}-")).rmdir()


def _why(folder: Path, exc: OSError) -> str:
    """What stops writing in `folder`: a file where it or a parent should be, else the system's reason."""
    blocking = next((path for path in (folder, *folder.parents) if os.path.isfile(path)), None)
    return f"{blocking} is a file" if blocking else f"{folder}: {exc.strerror or exc}"


def _discard(path: Path, tmp: Path) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    aside = Path(tempfile.mkdtemp(dir=tmp, prefix=f"{os.getpid()}-discard-"))
    with contextlib.suppress(FileNotFoundError):  # another build discarded it first
        path.rename(aside / path.name)
    shutil.rmtree(aside, ignore_errors=True)


def _owner_alive(staging_name: str) -> bool:
    pid = staging_name.split("-", 1)[0]
    return pid.isdigit() and process_alive(int(pid))
