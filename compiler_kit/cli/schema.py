"""`ckit schema`: the recipe's JSON Schema, for editor completion and validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def schema(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print the JSON Schema of recipe files (point your editor's YAML plugin at it)."""
    from compiler_kit.artifacts import write_atomically
    from compiler_kit.recipe import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        write_atomically(out, lambda handle: handle.write(text.encode("utf-8")))
