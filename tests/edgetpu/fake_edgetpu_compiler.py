"""TEST DOUBLE of `edgetpu_compiler` (the real one cannot be installed here): it exercises ckit's subprocess
plumbing only. It mimics the documented command line (FACTS.md) and, by FAKE_EDGETPU_MODE, behaves as:
success | partial (0 Edge TPU subgraphs) | fail (exit 1, "Model not quantized") | hang (sleeps, with a child) |
no-output (exit 0, writes nothing) | garbage (exit 0, unparseable text, writes the model) |
flood (first FAKE_EDGETPU_FLOOD_MB of noise on stdout and stderr, also for --version, then success with a .log
padded to that size) |
orphan (success, leaving a child that holds stdout open) | escape (success, but the compiled model is a symbolic
link to a file outside the output folder).
The parser it feeds is tested separately on real compiler logs (tests/edgetpu/logs/).
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SUMMARY = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of {timeout} seconds.

Model compiled successfully in 210 ms.

Input model: {model}
Input size: 43.79KiB
Output model: {out}
Output size: 120.16KiB
On-chip memory used for caching model parameters: 41.75KiB
On-chip memory remaining for caching model parameters: 7.88MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: {subgraphs}
Total number of operations: 8
Operation log: {log}
See the operation log file for individual operation details.
Compilation child process completed within timeout period.
Compilation succeeded!
"""
LOG = """Edge TPU Compiler version 16.0.384591198
Input: {model}
Output: {out}

Operator                       Count      Status

CONV_2D                        2          {status}
MAX_POOL_2D                    2          {status}
RESHAPE                        1          {status}
FULLY_CONNECTED                2          {status}
QUANTIZE                       1          {status}
"""


def flood(megabytes: int) -> None:
    line = b"W noise from a compiler gone wrong: \xff\xfe not even UTF-8 " * 4 + b"\n"
    block = line * ((1 << 20) // len(line))
    for k in range(megabytes):
        (sys.stdout.buffer if k % 2 else sys.stderr.buffer).write(block)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*")
    parser.add_argument("-o", "--out_dir", default=".")
    parser.add_argument("-v", "--version", action="store_true")
    parser.add_argument("-s", "--show_operations", action="store_true")
    parser.add_argument("-t", "--timeout_sec", type=int, default=180)
    parser.add_argument("-m", "--min_runtime_version", type=int)
    parser.add_argument("-n", "--num_segments", type=int)
    parser.add_argument("-d", "--search_delegate", action="store_true")
    parser.add_argument("-k", "--delegate_search_step", type=int)
    parser.add_argument("-i", "--intermediate_tensors")
    args = parser.parse_args()
    mode = os.environ.get("FAKE_EDGETPU_MODE", "success")
    flood_mb = int(os.environ.get("FAKE_EDGETPU_FLOOD_MB", "200"))
    if mode == "flood":
        flood(flood_mb)  # before anything else, --version included
    if args.version:
        print("Edge TPU Compiler version 16.0.384591198")
        return 0
    Path(os.environ.get("FAKE_EDGETPU_ARGS_FILE", os.devnull)).write_text(" ".join(sys.argv[1:]))
    model = Path(args.models[0])
    out = Path(args.out_dir) / f"{model.stem}_edgetpu.tflite"
    if mode == "hang":
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # a child that must die too
        time.sleep(600)
    if mode == "fail":
        print("Edge TPU Compiler version 16.0.384591198\nInvalid model: " + str(model) + "\nModel not quantized")
        return 1
    if mode == "no-output":
        print("Edge TPU Compiler version 16.0.384591198")
        return 0
    if mode == "garbage":
        print("\x00\x01 something else entirely \n ??? 12 34")
        shutil.copy(model, out)
        return 0
    if mode == "orphan":
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # it inherits stdout, the pipe
    subgraphs = 0 if mode == "partial" else 1
    status = "More than one subgraph is not supported" if subgraphs == 0 else "Mapped to Edge TPU"
    names = [f"{model.stem}_segment_{k}_of_{args.num_segments}" for k in range(args.num_segments or 0)]
    for name in names or [model.stem]:  # with -n, one model and one log per segment, the summary repeated
        out, log = Path(args.out_dir) / f"{name}_edgetpu.tflite", Path(args.out_dir) / f"{name}_edgetpu.log"
        shutil.copy(model, out)
        log.write_text(LOG.format(model=model.name, out=out.name, status=status))
        if mode == "flood":
            os.truncate(log, flood_mb << 20)  # sparse: a huge file at no cost
        if mode == "escape":
            out.unlink()
            out.symlink_to(model.resolve())
        print(
            SUMMARY.format(timeout=args.timeout_sec, model=model.name, out=out.name, log=log.name, subgraphs=subgraphs)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
