"""The device agent: runs .tflite models on an edge device for ckit, with only what such a device has.

It is sent to the device on every call (nothing is installed there, nothing is left behind) and needs the standard
library, numpy, and `tflite_runtime` or `ai_edge_litert`; the Edge TPU delegate (`libedgetpu`) when a compiled
model is run. Its syntax stays that of Python 3.6 (tests parse it so), older than the Python of any board Coral
supports (Mendel Linux on the Dev Board and Raspberry Pi OS Buster ship 3.7): no `from __future__ import
annotations`, no dataclasses, no walrus, no zip(strict=), and annotations of typing's names only (Python 3.6
evaluates them: no list[int]).

The protocol (compiler_kit/device/session.py is the other side), all on the ssh channel's stdin and stdout:
  stdin:  one JSON line (the job), then the bytes of each model in the job's order, then the inputs (.npz: `i0`,
          `i1`, ... each (samples, ...) in the model's input type, already quantized and in its layout);
  stdout: one JSON line (the result), then the outputs (.npz: `MODEL#k`, the k-th output tensor, raw);
  stderr: progress lines `ckit-agent: {json}` (received, per model samples done, timed runs done), among what
          native code prints there.
A "probe" job reads nothing more and answers with the device's runtime versions and whether an Edge TPU answers.
Exit codes: 0 done, 3 the job failed (the result line says why).
"""

import contextlib
import io
import json
import platform
import sys
import time
from typing import Any, BinaryIO

PROGRESS_EVERY_S = 0.5
EDGETPU_LIBRARY = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}


def progress(**fields: object) -> None:
    sys.stderr.write("ckit-agent: " + json.dumps(fields) + "\n")
    sys.stderr.flush()


def interpreter_module() -> tuple:
    """The Interpreter class, load_delegate, and the runtime's name and version: the standalone interpreter devices
    install first (tflite_runtime), else LiteRT."""
    try:
        import tflite_runtime
        from tflite_runtime.interpreter import Interpreter, load_delegate

        return Interpreter, load_delegate, "tflite-runtime", getattr(tflite_runtime, "__version__", "unknown")
    except ImportError:
        from ai_edge_litert.interpreter import Interpreter, load_delegate

        return Interpreter, load_delegate, "ai-edge-litert", _distribution_version("ai-edge-litert")


def _distribution_version(name: str) -> str:
    try:
        from importlib import metadata  # Python 3.8+

        return metadata.version(name)
    except Exception:  # an old Python or a runtime installed without metadata: the version is only reported
        return "unknown"


def edgetpu_delegate(load_delegate: object, device: str) -> object:
    """The Edge TPU delegate at `device` ('' = the first found); raises RuntimeError saying what is missing."""
    library = EDGETPU_LIBRARY.get(platform.system(), EDGETPU_LIBRARY["Linux"])
    try:
        return load_delegate(library, {"device": device} if device else {})  # type: ignore[operator]
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"no Edge TPU: {library} could not be loaded or found no device ({exc})") from exc


def versions() -> dict:
    import numpy

    found = {"python": platform.python_version(), "machine": platform.machine(), "system": platform.system()}
    found["numpy"] = numpy.__version__
    _, _, runtime, version = interpreter_module()
    found["runtime"] = runtime
    found["runtime_version"] = version
    return found


def probe(job: dict) -> dict:
    _, load_delegate, _, _ = interpreter_module()
    try:
        edgetpu_delegate(load_delegate, job.get("edgetpu_device", ""))
        edgetpu = {"available": True, "reason": ""}
    except RuntimeError as exc:
        edgetpu = {"available": False, "reason": str(exc)}
    return {"ok": True, "versions": versions(), "edgetpu": edgetpu}


def read_exactly(stream: BinaryIO, size: int) -> bytes:
    chunks = []
    left = size
    while left:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            raise RuntimeError(f"the input ended {left} bytes early")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def run_model(interp: Any, inputs: list, model: dict, job: dict) -> tuple:
    """Every sample through the model (raw outputs kept), then the timed runs on the first sample."""
    import numpy

    started = time.perf_counter()
    interp.allocate_tensors()
    feeds = [detail["index"] for detail in interp.get_input_details()]
    fetches = interp.get_output_details()
    samples = len(inputs[0])
    outputs = [numpy.empty((samples, *d["shape"][1:]), dtype=d["dtype"]) for d in fetches]
    first_ms = 0.0
    reported = time.perf_counter()
    for position in range(samples):
        for index, array in zip(feeds, inputs):
            interp.set_tensor(index, array[position : position + 1])
        start = time.perf_counter()
        interp.invoke()
        if position == 0:
            first_ms = (time.perf_counter() - start) * 1e3
        for k, detail in enumerate(fetches):
            outputs[k][position] = interp.get_tensor(detail["index"])[0]
        if time.perf_counter() - reported > PROGRESS_EVERY_S:
            progress(model=model["name"], done=position + 1, of=samples)
            reported = time.perf_counter()
    progress(model=model["name"], done=samples, of=samples)
    latency_ms = timed_runs(interp, feeds, inputs, job["warmup"], job["runs"])
    progress(model=model["name"], timed=len(latency_ms))
    summary = {
        "outputs": [detail["name"] for detail in fetches],
        "first_ms": first_ms,
        "latency_ms": latency_ms,
        "seconds": time.perf_counter() - started,
    }
    return summary, outputs


def timed_runs(interp: Any, feeds: list, inputs: list, warmup: int, runs: int) -> list:
    for index, array in zip(feeds, inputs):
        interp.set_tensor(index, array[0:1])
    for _ in range(warmup):
        interp.invoke()
    latency_ms = []
    for _ in range(runs):
        start = time.perf_counter()
        interp.invoke()
        latency_ms.append((time.perf_counter() - start) * 1e3)
    return latency_ms


def run(job: dict, stdin: BinaryIO) -> tuple:
    import numpy

    started = time.perf_counter()
    contents = [read_exactly(stdin, model["size"]) for model in job["models"]]
    with numpy.load(io.BytesIO(read_exactly(stdin, job["inputs_size"]))) as archive:
        inputs = [archive[f"i{k}"] for k in range(len(archive.files))]
    received_s = time.perf_counter() - started
    progress(received=sum(len(c) for c in contents) + job["inputs_size"], seconds=received_s)
    Interpreter, load_delegate, _, _ = interpreter_module()
    models = {}
    arrays = {}
    for model, content in zip(job["models"], contents):
        delegates = [edgetpu_delegate(load_delegate, job.get("edgetpu_device", ""))] if model["edgetpu"] else None
        interpreter = Interpreter(model_content=content, num_threads=job["threads"], experimental_delegates=delegates)
        summary, outputs = run_model(interpreter, inputs, model, job)
        models[model["name"]] = summary
        for k, output in enumerate(outputs):
            arrays[f"{model['name']}#{k}"] = output
    buffer = io.BytesIO()
    numpy.savez(buffer, **arrays)
    payload = buffer.getvalue()
    result = {"ok": True, "versions": versions(), "received_s": received_s, "models": models, "size": len(payload)}
    return result, payload


def main() -> int:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    payload = b""
    try:
        job = json.loads(stdin.readline().decode("utf-8"))
        if job["mode"] == "probe":
            result = probe(job)
        else:
            result, payload = run(job, stdin)
        code = 0
    except Exception as exc:  # the device's own failure (a runtime too old, no numpy): reported, never a traceback
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        with contextlib.suppress(Exception):  # numpy or the interpreter itself is what is missing: the error says
            result["versions"] = versions()
        code = 3
    stdout.write(json.dumps(result).encode("utf-8") + b"\n")
    stdout.write(payload)
    stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
