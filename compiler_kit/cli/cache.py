"""`ckit cache info | prune | clear`: what the stage cache holds, and making room.

Run prune and clear when no build is running: a build that is reusing an entry while it goes fails (exit 1) and
succeeds when run again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from compiler_kit.cli.errors import exits_cleanly
from compiler_kit.errors import BadInputError

if TYPE_CHECKING:  # imported late at run time: `ckit cache` starts fast
    from compiler_kit.cache import StageCache, StoredEntry

cache_app = typer.Typer(
    name="cache",
    help="The stage cache that makes rebuilds fast: see what it holds, prune what is unused, clear it.",
    no_args_is_help=True,
)
CacheDir = Annotated[
    Path | None, typer.Option("--cache-dir", help="The cache (default $CKIT_CACHE_DIR, else ~/.cache/ckit).")
]


def _open(cache_dir: Path | None):  # -> StageCache
    from compiler_kit.cache import StageCache, default_root

    return StageCache(cache_dir or default_root())


@cache_app.command("info")
@exits_cleanly
def info(cache_dir: CacheDir = None) -> None:
    """Entries and bytes per stage, and the oldest last use."""
    cache = _open(cache_dir)
    entries = cache.entries()
    typer.echo(f"{cache.root}: {len(entries)} entries, {_mib(sum(e.bytes for e in entries))}")
    for stage in sorted({entry.stage for entry in entries}):
        mine = [entry for entry in entries if entry.stage == stage]
        typer.echo(f"  {stage:<9} {len(mine):>5} entries  {_mib(sum(e.bytes for e in mine)):>12}")
    if entries:
        typer.echo(f"oldest last use: {_days(entries[0].last_used):.1f} days ago")


@cache_app.command("prune")
@exits_cleanly
def prune(
    older_than_days: Annotated[
        float, typer.Option("--older-than-days", min=0, help="Remove entries not used for this many days.")
    ] = 30.0,
    cache_dir: CacheDir = None,
) -> None:
    """Remove the entries no build has reused for --older-than-days (a build's own use counts as one)."""
    cache = _open(cache_dir)
    old = [entry for entry in cache.entries() if _days(entry.last_used) > older_than_days]
    _remove(cache, old)
    typer.echo(f"removed {len(old)} entries, {_mib(sum(e.bytes for e in old))}, unused for {older_than_days:g} days")


@cache_app.command("clear")
@exits_cleanly
def clear(cache_dir: CacheDir = None) -> None:
    """Remove every entry: the next build of each recipe runs every stage."""
    cache = _open(cache_dir)
    entries = cache.entries()
    _remove(cache, entries)
    typer.echo(f"removed {len(entries)} entries, {_mib(sum(e.bytes for e in entries))}")


def _remove(cache: StageCache, entries: list[StoredEntry]) -> None:
    try:
        for entry in entries:
            cache.remove(entry)
    except OSError as exc:  # a read-only file system (a CI cache restored read only), a file in the way
        raise BadInputError(
            f"cannot remove cache entries: {exc.strerror or exc}",
            path=cache.root,
            fix="run it where the cache folder and its tmp/ folder can be written (a writable mount, as their owner)",
        ) from None


def _days(timestamp: float) -> float:
    return (time.time() - timestamp) / 86400


def _mib(count: int) -> str:
    return f"{count / (1 << 20):.1f} MiB"
