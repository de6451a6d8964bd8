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
DeviceUrls = Annotated[
    list[str] | None,
    typer.Option(
        "--device",
        metavar="URL",
        help="Also run on this device: ssh://user@host[:port] (repeatable; beside the recipe's verify.devices). "
        "The device needs python3, numpy and tflite-runtime (or ai-edge-litert), and Coral's libedgetpu for "
        "the Edge TPU; ssh keys and known_hosts are ssh's own.",
    ),
]
AcceptNewHostKey = Annotated[
    bool,
    typer.Option(
        "--accept-new-host-key",
        help="Trust a device whose host key is not yet in known_hosts, and remember it (a CHANGED key is still "
        "refused).",
    ),
]
