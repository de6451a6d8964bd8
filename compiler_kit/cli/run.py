"""`ckit run MODEL IMAGES...`: the classification demo, here or on a device: top-k per image and frames per second."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from compiler_kit.cli.errors import exits_cleanly
from compiler_kit.cli.options import AcceptNewHostKey

if TYPE_CHECKING:
    from compiler_kit.classify import Ranked


@exits_cleanly
def run(
    model: Annotated[Path, typer.Argument(help="A build folder (e.g. build/digits_keras) or an int8 .tflite model.")],
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG, JPEG, ...).")],
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            metavar="URL",
            help="Run on this device (ssh://user@host[:port]) instead of here: its CPU, and its Edge TPU when the "
            "build folder has a compiled model and the device has libedgetpu.",
        ),
    ] = None,
    labels: Annotated[Path | None, typer.Option(help="Labels, one per line (Coral's `N label` lines too).")] = None,
    top: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Classes shown per image.")] = 3,
    scale: Annotated[float | None, typer.Option(help="Pixel multiplier (default: the recipe's, or 1/255).")] = None,
    mean: Annotated[float | None, typer.Option(help="Subtracted after scaling (default: the recipe's, or 0).")] = None,
    std: Annotated[float | None, typer.Option(help="Divided by next (default: the recipe's, or 1).")] = None,
    runs: Annotated[int, typer.Option(min=1, max=100_000, help="Timed runs of the first image.")] = 100,
    warmup: Annotated[int, typer.Option(min=0, max=100_000, help="Untimed runs before them.")] = 10,
    threads: Annotated[int, typer.Option(min=1, max=1024, help="CPU threads.")] = 1,
    python: Annotated[str, typer.Option(help="The device's Python.")] = "python3",
    identity: Annotated[Path | None, typer.Option(help="The device's private key file (default: ssh's own).")] = None,
    known_hosts: Annotated[Path | None, typer.Option(help="known_hosts file (default: ssh's own).")] = None,
    accept_new_host_key: AcceptNewHostKey = False,
) -> None:
    """Classify images with an int8 model, as Coral's classify_image example does: each image resized to the
    model's input, preprocessed as the build's recipe says, top-k classes with their scores, then the median
    latency of the first image over timed runs as frames per second.

    Locally it runs on LiteRT; with --device on the device's own runtime, over SSH (keys and known_hosts are
    ssh's own). Exit codes: 0 done · 2 bad model, image or option · 4 the device cannot be reached or was lost.
    """
    from compiler_kit.classify import load_images, open_classifier, read_labels, run_here, run_on_device
    from compiler_kit.recipe import DEVICE_FIX, DEVICE_OPTION, Device, Latency, Preprocess, from_options
    from compiler_kit.runners.litert import LiteRtRunner

    classifier = open_classifier(model)
    names = read_labels(labels)
    base = classifier.preprocess or Preprocess(scale=1 / 255)
    given = {"scale": scale, "mean": None if mean is None else [mean], "std": None if std is None else [std]}
    overrides = {key: value for key, value in given.items() if value is not None}  # else the recipe's
    preprocess = from_options(Preprocess, {**base.model_dump(), **overrides}, "give finite numbers; a std above 0")
    remote = None  # every option is checked before any work
    if device is not None:
        trust = {"accept_new_host_key": accept_new_host_key}
        settings = {"url": device, "python": python, "identity": identity, "known_hosts": known_hosts, **trust}
        remote = from_options(Device, settings, DEVICE_FIX, DEVICE_OPTION)
    here = LiteRtRunner("tflite-int8", classifier.model, threads)
    here.prepare()
    batch = load_images(images, [int(n) for n in here.inputs[0]["shape"]], preprocess)
    latency = Latency(warmup=warmup, runs=runs)
    if remote is None:
        ranked = [run_here(here, batch, top, names, latency)]
    else:
        ranked = run_on_device(remote, classifier, here, batch, top, names, latency)
    typer.echo("\n\n".join(render(r, images) for r in ranked))


def render(ranked: Ranked, images: list[Path]) -> str:
    from compiler_kit.report.render import text_table

    stats = ranked.latency
    pairs = zip(images, ranked.top, strict=True)
    rows = [[image.name, *(f"{label} {score:.3f}" for label, score in top)] for image, top in pairs]
    header = ["image", *(f"top-{k + 1}" for k in range(len(ranked.top[0])))]
    fps = 1000 / stats.p50_ms if stats.p50_ms > 0 else float("inf")
    return (
        f"{ranked.runner} ({ranked.runtime})\n{text_table((header, rows))}\n"
        f"latency p50 {stats.p50_ms:.3f} ms, p90 {stats.p90_ms:.3f} ms: {fps:.1f} frames/s "
        f"({stats.runs} timed runs of the first image after {stats.warmup} warm-up)"
    )
