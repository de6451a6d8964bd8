"""Options more than one command takes, declared once (the same flag reads the same in every --help)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

CacheDir = Annotated[
    Path | None, typer.Option("--cache-dir", help="Stage cache (default $CKIT_CACHE_DIR, else ~/.cache/ckit).")
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="ADDRESS",
        help="Run each build as a task on the Ray cluster at ADDRESS (host:port of `ray start --head`); every node "
        "must see the recipes, data and folders at the same paths.",
    ),
]
