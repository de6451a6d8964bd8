"""The build folder: every artifact lands atomically (written beside its final name, then renamed), so a build
that fails or is interrupted never leaves a half-written file where a finished one is expected.

One build at a time writes a folder: `locked()` holds an exclusive lock on `.ckit.lock` for the whole build
(the kernel releases it when the process dies, even by SIGKILL), and a second build of the same folder waits.
Temporary names start with a dot and end in `.tmp`; what a killed build left of them goes at the next build.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from compiler_kit.errors import BadInputError, disk_full_as, tree_bytes


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


LOCK = ".ckit.lock"
# A build of a CI model takes minutes (the corpus's largest: 4); one holding a folder for an hour is stuck, and a
# job that waits for it forever helps nobody.
LOCK_TIMEOUT_S, LOCK_POLL_S = 3600.0, 0.5


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def process_alive(pid: int) -> bool:
    """Whether process `pid` still runs: what a temporary folder named after its maker's pid is kept for (a killed
    build's is removed by the next one, a running build's never)."""
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        return True
    return True


def write_atomically(final: Path, fill: Callable[[BinaryIO], object]) -> Path:
    """`fill` writes a temporary file beside `final` that replaces it only once complete and on disk."""
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts are shared like any written file
        os.replace(tmp, final)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None:  # a write to an open file names no file: say which, for the message
            raise OSError(exc.errno, exc.strerror, str(final)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


class BuildFolder:
    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".write-test-"):
                pass
        except OSError as exc:
            raise BadInputError(
                f"cannot write the build folder: {exc.strerror or exc}",
                path=self.root,
                fix="set output.dir in the recipe (or --out) to a folder you can write",
            ) from None

    def path(self, name: str) -> Path:
        return self.root / name

    @contextlib.contextmanager
    def locked(self, on_wait: Callable[[str], None], timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
        """Hold the folder's lock for the block; `on_wait` hears why, when another build holds it. A build that
        still holds it after `timeout_s` is taken for stuck: bad input naming its process, not a wait forever."""
        fd = os.open(self.path(LOCK), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if not _try_lock(fd):
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                on_wait(f"waiting for another build of {self.root} (pid {holder}) to finish ...")
                self._wait_for_lock(fd, holder, timeout_s)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _wait_for_lock(self, fd: int, holder: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                raise BadInputError(
                    f"another build (pid {holder}) has held this build folder for more than {timeout_s:.0f} s",
                    path=self.root,
                    fix="wait for it or stop it, or build into another folder (--out)",
                )
            time.sleep(LOCK_POLL_S)

    def remove_leftovers(self, names: tuple[str, ...]) -> None:
        """Temporary files of builds that were killed, and `names` (the last build's reports and log: a report
        in the folder always describes the artifacts beside it). Call it holding the lock."""
        for path in self.root.iterdir():
            if (path.name.startswith(".") and path.name.endswith(".tmp")) or path.name in names:
                self.remove(path.name)

    def remove(self, name: str) -> None:
        path = self.path(name)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def install(self, source: Path, name: str) -> None:
        """Make `name` a copy of `source` (a file or a folder), atomically; an absent `source` removes `name`."""
        with disk_full_as(self.root, f"copying {name} into the build folder", lambda: tree_bytes(source)):
            if source.is_dir():
                with self.new_dir(name) as tmp:
                    shutil.copytree(source, tmp, dirs_exist_ok=True)
            elif source.is_file():
                with source.open("rb") as original:
                    self._write(name, lambda handle: shutil.copyfileobj(original, handle, 1 << 20))
            else:
                self.remove(name)

    def write_bytes(self, name: str, data: bytes) -> Path:
        return self._write(name, lambda handle: handle.write(data))

    def _write(self, name: str, fill: Callable[[BinaryIO], object]) -> Path:
        return write_atomically(self.path(name), fill)

    def write_text(self, name: str, text: str) -> Path:
        return self.write_bytes(name, text.encode("utf-8"))

    @contextlib.contextmanager
    def new_dir(self, name: str) -> Iterator[Path]:
        """A fresh folder to fill; it replaces `name` only when the block completes."""
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}.", suffix=".tmp"))
        aside = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}.old.", suffix=".tmp"))
        try:
            yield tmp
            final = self.path(name)
            if final.exists() or final.is_symlink():  # moved aside, never deleted in place: no half-removed folder
                final.rename(aside / name)
            tmp.rename(final)
        finally:
            for path in (tmp, aside):
                if path.exists():
                    shutil.rmtree(path)

    def describe(self, name: str) -> dict[str, object]:
        """The report's entry for one artifact file."""
        path = self.path(name)
        return {"path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size}


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
