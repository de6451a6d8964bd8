"""The build folder: every artifact lands atomically (written beside its final name, then renamed), so a build
that fails or is interrupted never leaves a half-written file where a finished one is expected."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from compiler_kit.errors import BadInputError


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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

    def write_bytes(self, name: str, data: bytes) -> Path:
        final = self.path(name)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts are shared like any written file
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return final

    def write_text(self, name: str, text: str) -> Path:
        return self.write_bytes(name, text.encode("utf-8"))

    @contextlib.contextmanager
    def new_dir(self, name: str) -> Iterator[Path]:
        """A fresh folder to fill; it replaces `name` only when the block completes."""
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}.", suffix=".tmp"))
        try:
            yield tmp
            final = self.path(name)
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)

    def fresh_dir(self, name: str) -> Path:
        """An empty folder for a tool that writes its own files (the Edge TPU compiler): last build's is removed."""
        path = self.path(name)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir()
        return path

    def describe(self, name: str) -> dict[str, object]:
        """The report's entry for one artifact file."""
        path = self.path(name)
        return {"path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size}
