"""The reliability trials' verdicts (benchmarks/trials.py): what a finished `ckit` process and the folders it left
must look like. Pure logic on exit codes, stderr text and file listings (no processes), tested in
tests/benchmarks/test_trials.py.

Each check returns a list of problems, one short line each; an empty list is a pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

TRACEBACK = "Traceback (most recent call last)"
ERROR, WARNING = "error: ", "warning: "
_FIX = re.compile(r"^\s*fix: \S")
NO_SPACE = "No space left on device"
LOCK = ".ckit.lock"  # the build folder's lock file: it stays, by design
REPORTS = ("report.json", "report.md", "report.html")
EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 2, 130
SHOWN = 160  # characters of a message quoted in a reason


def clip(text: str, limit: int = SHOWN) -> str:
    """One line of at most `limit` characters, for a reason."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def has_traceback(*texts: str) -> bool:
    return any(TRACEBACK in text for text in texts)


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(ERROR)]


def error_message(stderr: str) -> str:
    """The first `error:` line and the indented lines that continue it (its details and its `fix:` line)."""
    lines = stderr.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(ERROR)), None)
    if start is None:
        return ""
    message = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith((" ", "\t")):
            break
        message.append(line)
    return "\n".join(message)


def has_fix(message: str) -> bool:
    return any(_FIX.match(line) for line in message.splitlines())


def exit_problems(code: int | None, allowed: Sequence[int], stderr: str) -> list[str]:
    """The exit code is one of `allowed`; a timeout (None) or a crash says what stderr ended with."""
    if code is None:
        return [f"timed out; stderr ends: {clip(last_line(stderr))}"]
    if code in allowed:
        return []
    return [f"exit {code} (expected {' or '.join(map(str, allowed))}): {clip(last_line(stderr))}"]


def traceback_problems(*texts: str) -> list[str]:
    if not has_traceback(*texts):
        return []
    text = next(t for t in texts if TRACEBACK in t)
    return [f"traceback: {clip(last_line(text[text.index(TRACEBACK) :]))}"]


def build_problems(code: int | None, stderr: str, allowed: Sequence[int] = (EXIT_OK,)) -> list[str]:
    return exit_problems(code, allowed, stderr) + traceback_problems(stderr)


def bad_input_problems(code: int | None, stdout: str, stderr: str, names: Iterable[str]) -> list[str]:
    """Exit 2, no traceback, exactly one `error:` message naming one of `names` (the file or the recipe field at
    fault), with a `fix:` line."""
    problems = exit_problems(code, (EXIT_BAD_INPUT,), stderr) + traceback_problems(stdout, stderr)
    errors = error_lines(stderr)
    if len(errors) != 1:
        problems.append(f"{len(errors)} error: lines")
    message = error_message(stderr)
    wanted = list(names)
    if message and not any(name in message for name in wanted):
        problems.append(f"message names none of {wanted}: {clip(message)}")
    if message and not has_fix(message):
        problems.append(f"no fix: line: {clip(message)}")
    return problems


def hidden_or_tmp(part: str) -> bool:
    """A temporary name of ckit's (`.NAME.*.tmp`, `.ckit-cache.*.tmp`, `.write-test-*`) or any hidden file."""
    return part.endswith(".tmp") or (part.startswith(".") and part != LOCK)


def leftovers(listing: Iterable[str]) -> list[str]:
    """The paths (relative, '/'-separated) of a build folder's listing that a finished build must not leave."""
    return sorted(path for path in listing if any(hidden_or_tmp(part) for part in PurePosixPath(path).parts))


def staging_leftovers(cache_listing: Iterable[str]) -> list[str]:
    """A cache's `tmp/<pid>-*` staging folders (a dead build's, or a finished one's that was not removed)."""
    found = []
    for path in cache_listing:
        parts = PurePosixPath(path).parts
        if len(parts) == 2 and parts[0] == "tmp" and re.match(r"\d+-", parts[1]):
            found.append(path)
    return sorted(found)


def work_dir_leftovers(tmp_listing: Iterable[str]) -> list[str]:
    """onnx2tf's scratch folders (`$TMPDIR/ckit-onnx2tf-*`)."""
    return sorted(path for path in tmp_listing if PurePosixPath(path).parts[0].startswith("ckit-onnx2tf-"))


def listing(root: Path) -> list[str]:
    """Every path under `root`, relative and '/'-separated (empty when `root` does not exist)."""
    if not root.is_dir():
        return []
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*"))


def reports_all_or_none(names: Iterable[str]) -> bool:
    present = set(REPORTS) & set(names)
    return not present or present == set(REPORTS)


def cache_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(WARNING) and "cache" in line]


def corrupt_warnings(stderr: str, stage: str) -> list[str]:
    prefix = f"{WARNING}the cached {stage} entry "
    return [line for line in stderr.splitlines() if line.startswith(prefix) and " is corrupt (" in line]


def disk_full_problems(code: int | None, stdout: str, stderr: str, mount: Path) -> list[str]:
    """Exit 2 with one `error:` line naming a folder on the full file system `mount` and `No space left on
    device`, and a `fix:` line; or exit 0 (it fit). Never a traceback."""
    problems = exit_problems(code, (EXIT_BAD_INPUT, EXIT_OK), stderr) + traceback_problems(stdout, stderr)
    if code != EXIT_BAD_INPUT:
        return problems
    errors = error_lines(stderr)
    if len(errors) != 1:
        return [*problems, f"{len(errors)} error: lines"]
    named = re.match(rf"{ERROR}(/\S*): {NO_SPACE}", errors[0])
    if not named:
        problems.append(f"not a '{NO_SPACE}' message naming a folder: {clip(errors[0])}")
    elif not Path(named[1]).is_relative_to(mount):
        problems.append(f"names {named[1]}, not a folder on the full file system {mount}")
    if not has_fix(error_message(stderr)):
        problems.append("no fix: line")
    return problems


def tampered_values(texts: Iterable[str], sentinels: Iterable[str]) -> list[str]:
    """The damaged cache's planted values that reached a report."""
    joined = "\n".join(texts)
    return sorted({sentinel for sentinel in sentinels if sentinel in joined})


def stage_reached(stderr: str) -> str:
    """Where a build was by its last progress line: `in [3/7] quantize`, `after [7/7] report`, `in start-up`."""
    progress = [line for line in stderr.splitlines() if re.match(r"\[\d+/\d+\] ", line)]
    if not progress:
        return "in start-up"
    stage = " ".join(progress[-1].split()[:2]).rstrip(":")
    return f"{'after' if ' done in ' in progress[-1] or ' reused ' in progress[-1] else 'in'} {stage}"


def parse_listing(stdout: str, marker: str) -> tuple[str, list[str]]:
    """Split a namespace run's stdout into ckit's own output and the listing printed after `marker`."""
    head, _, tail = stdout.partition(f"{marker}\n")
    return head, [line for line in tail.splitlines() if line]
