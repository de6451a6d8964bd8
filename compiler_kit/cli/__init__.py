"""The `ckit` command line: one module per command. Frameworks load inside commands, so --help is instant."""

from __future__ import annotations

import os
import signal
import sys
from typing import NoReturn

import typer

from compiler_kit import __version__
from compiler_kit.cli.build import build
from compiler_kit.cli.cache import cache_app
from compiler_kit.cli.compile_log import compile_log
from compiler_kit.cli.doctor import doctor
from compiler_kit.cli.errors import INTERRUPTS, SIGNALS
from compiler_kit.cli.init import init
from compiler_kit.cli.inspect import inspect_model
from compiler_kit.cli.report import report_app
from compiler_kit.cli.run import run
from compiler_kit.cli.schema import schema
from compiler_kit.cli.tune import tune
from compiler_kit.errors import EXIT_INTERRUPTED

app = typer.Typer(
    name="ckit",
    help="compiler_kit: trained float models (Keras, ONNX, PyTorch) -> full-integer int8 TFLite for the Edge TPU, "
    "with the accuracy and latency drift of every step measured and gated.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# In the order a user meets them: build a recipe, look into a model or a compiler log, check the machine.
app.command()(build)
app.command()(tune)
app.command()(run)
app.command("inspect")(inspect_model)
app.command("compile-log")(compile_log)
app.command()(doctor)
app.command()(init)
app.command()(schema)
app.add_typer(report_app, name="report")
app.add_typer(cache_app, name="cache")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ckit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """compiler_kit: float models to int8 TFLite and the Edge TPU, with measured drift."""


def main() -> NoReturn:
    """Run one command and leave at once with its exit code. Once the verdict is decided nothing may change it:
    the interpreter's teardown (TensorFlow's and absl's exit handlers, about 2 s) is skipped, and SIGTERM or
    Ctrl-C arriving after the command are held back (a CI runner cancelling a finished job no longer turns exit
    0 into 143, 130, Click's "Aborted!" or a traceback). Every file a command writes is complete before it returns
    (atomic writes, closed logs)."""
    INTERRUPTS.install()  # a command may decide its verdict sooner (build: once its reports are written)
    code = EXIT_INTERRUPTED
    try:
        try:
            code = _exit_code()
        finally:
            INTERRUPTS.decide()
    except KeyboardInterrupt:  # a signal in the instant between the command's end and its verdict being held
        INTERRUPTS.decide()
    signal.pthread_sigmask(signal.SIG_BLOCK, set(SIGNALS))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _exit_code() -> int:
    try:
        app()
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return 0
