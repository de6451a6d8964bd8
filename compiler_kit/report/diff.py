"""Two reports side by side: what a change to the model, the recipe or the tools did to accuracy, latency, the
Edge TPU mapping, the model sizes and the verdict. A baseline report also gives the values relative gates start from.

Only what both reports measured is compared: comparison pairs matched on reference and candidate, runners by name.
A change in the bad direction (lower accuracy, slower, fewer ops on the Edge TPU, bigger) is marked worse; latency is
noisy, so read a small slow-down as a hint, not a verdict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from compiler_kit.compare.catalog import CATALOG, Better
from compiler_kit.compare.catalog import Kind as MetricKind
from compiler_kit.compare.tasks import TASK_METRIC_NAMES
from compiler_kit.errors import BadInputError
from compiler_kit.gates import drift_comparison
from compiler_kit.report.document import SCHEMA_VERSION
from compiler_kit.report.tables import drift_outputs

REPORT_JSON = "report.json"

# How a value is shown: a metric's kind (compare/catalog.py), or one of the figures only a report has.
Kind = MetricKind | Literal["ms", "bytes", "verdict"]
# The aggregate metrics of each comparison a diff shows; how each reads and which way is better: the catalog.
METRICS = ("accuracy_candidate", "accuracy_drop_pp", "top1_agreement", "cosine", "snr_db")
LATENCY: tuple[tuple[str, Better], ...] = (("p50_ms", "lower"), ("p99_ms", "lower"))
EDGETPU: tuple[tuple[str, Kind, Better], ...] = (
    ("ops_on_edgetpu", "count", "higher"),
    ("ops_on_cpu", "count", "lower"),
    ("off_chip_bytes", "bytes", "lower"),
    ("predicted_ms[usb]", "ms", "lower"),
    ("predicted_ms[devboard]", "ms", "lower"),
    ("predicted_ms[pcie]", "ms", "lower"),
)
ARTIFACTS = ("float_tflite", "int8_tflite")
# Schema 2 only added keys to schema 1 (report/document.py): a production baseline built before it still reads.
READABLE_SCHEMA_VERSIONS = (1, SCHEMA_VERSION)
_PASS_REPORT = "pass the report.json that `ckit build` wrote (or its build folder)"
WORSE = "▼"


def load_report(path: Path | str) -> dict[str, Any]:
    """A ckit report.json (or a build folder holding one) of this ckit's schema version; else exit 2, naming it."""
    path = Path(path)
    if path.is_dir() and (path / REPORT_JSON).is_file():
        path = path / REPORT_JSON
    if not path.is_file():
        raise BadInputError("no such file", path=path, fix="pass the report.json of a ckit build (or its folder)")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(
            f"not JSON ({exc})", path=path, fix="pass the report.json of a ckit build, not report.md or a model"
        ) from None
    except RecursionError:  # nested deeper than Python's stack: no report is
        raise BadInputError("not a ckit report (JSON nested too deep)", path=path, fix=_PASS_REPORT) from None
    except OSError as exc:
        raise BadInputError(f"cannot read it ({exc.strerror})", path=path, fix=_PASS_REPORT) from None
    if not isinstance(report, dict) or "schema_version" not in report:
        raise BadInputError(
            "not a ckit report (no schema_version)", path=path, fix="pass the report.json that `ckit build` wrote"
        )
    if report["schema_version"] not in READABLE_SCHEMA_VERSIONS:
        raise BadInputError(
            f"report schema_version {report['schema_version']!r}, this ckit reads schema_version "
            f"{' and '.join(map(str, READABLE_SCHEMA_VERSIONS))}",
            path=path,
            fix="rebuild it with this ckit (`ckit build RECIPE`), then compare again",
        )
    return report


@dataclass(frozen=True)
class Change:
    """One figure in both reports. `key` is stable for scripts, e.g. `latency.tflite-int8.p50_ms`."""

    key: str
    what: str
    kind: Kind
    better: Better | None
    old: float | bool | None
    new: float | bool | None

    @property
    def delta(self) -> float | None:
        if self.kind == "verdict" or self.old is None or self.new is None:
            return None
        return self.new - self.old

    @property
    def percent(self) -> float | None:
        """The relative change in %, for latency and sizes; None where it means nothing or the old value is 0."""
        if self.kind not in ("ms", "bytes") or self.delta is None or not self.old:
            return None
        return 100 * self.delta / self.old

    @property
    def changed(self) -> bool:
        return self.old != self.new

    @property
    def worse(self) -> bool:
        if self.kind == "verdict":
            return self.old is True and self.new is False
        if self.delta is None or self.better is None:
            return False
        return self.delta < 0 if self.better == "higher" else self.delta > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "what": self.what,
            "old": self.old,
            "new": self.new,
            "change": self.delta,
            "change_pct": self.percent,
            "better": self.better,
            "worse": self.worse,
        }

    def row(self) -> list[str]:
        return [self.what, _show(self.kind, self.old), _show(self.kind, self.new), self._change()]

    def _change(self) -> str:
        if not self.changed:
            return "="
        if self.kind == "verdict":
            text = "FAILED now" if self.worse else "PASSES now"
        elif self.delta is None:
            text = "n/a"
        else:
            text = _show_delta(self.kind, self.delta)
            if self.percent is not None:
                text += f" ({self.percent:+.1f}%)"
        return f"{WORSE} {text}" if self.worse else text


@dataclass
class ReportDiff:
    """The figures both reports hold, old against new, with what only one of them has."""

    old_name: str
    new_name: str
    old_created: str | None
    new_created: str | None
    changes: list[Change]
    only_old: list[str] = field(default_factory=list)
    only_new: list[str] = field(default_factory=list)

    @property
    def worse(self) -> list[Change]:
        return [change for change in self.changes if change.worse]

    def as_dict(self) -> dict[str, Any]:
        return {
            "old": {"name": self.old_name, "created_utc": self.old_created},
            "new": {"name": self.new_name, "created_utc": self.new_created},
            "changes": [change.as_dict() for change in self.changes],
            "worse": [change.key for change in self.worse],
            "only_in_old": self.only_old,
            "only_in_new": self.only_new,
        }

    def markdown(self) -> str:
        name = f"`{self.old_name}`" if self.old_name == self.new_name else f"`{self.old_name}` -> `{self.new_name}`"
        when = f" ({self.old_created or '?'} -> {self.new_created or '?'})"
        worse = self.worse
        summary = f"{len(worse)} figure(s) got worse ({WORSE})." if worse else "Nothing got worse."
        if not any(change.changed for change in self.changes):
            summary = "No change."
        lines = [
            f"# ckit report diff {name}{when}",
            "",
            summary,
            "",
            "| what | old | new | change |",
            "|---|---|---|---|",
        ]
        lines += ["| " + " | ".join(change.row()) + " |" for change in self.changes]
        for label, items in (("only in old", self.only_old), ("only in new", self.only_new)):
            if items:
                lines += ["", f"{label}: " + ", ".join(items)]
        return "\n".join(lines) + "\n"


def diff_reports(old: dict[str, Any], new: dict[str, Any], *, allow_other_model: bool = False) -> ReportDiff:
    """Compare two loaded reports (see `load_report`). Refuses reports of different models (unless
    `allow_other_model`) and reports that share no runner and no comparison."""
    old_name, new_name = str(old.get("name")), str(new.get("name"))
    if old_name != new_name and not allow_other_model:
        raise BadInputError(
            f"the reports are of different models: old {old_name!r}, new {new_name!r}",
            fix="compare two builds of one recipe, or pass --allow-other-model (allow_other_model=True)",
        )
    old_pairs, new_pairs = _pairs(old), _pairs(new)
    old_latency, new_latency = old.get("latency") or {}, new.get("latency") or {}
    pairs = [pair for pair in old_pairs if pair in new_pairs]
    runners = [runner for runner in old_latency if runner in new_latency]
    if not pairs and not runners:
        raise BadInputError(
            f"no comparable runners: old has {sorted(old_latency) or 'none'}, new has {sorted(new_latency) or 'none'}, "
            "and no comparison pair in common",
            fix="compare builds that ran the same runners (source, tflite-float, tflite-int8, ...)",
        )
    changes = [Change("passed", "verdict", "verdict", "higher", old.get("passed"), new.get("passed"))]
    for pair in pairs:
        step = f"{pair[0]} -> {pair[1]}"
        for metric in METRICS:
            values = old_pairs[pair].get(metric), new_pairs[pair].get(metric)
            info = CATALOG[metric]
            if values != (None, None):
                key = f"comparisons.{pair[0]}->{pair[1]}.{metric}"
                changes.append(Change(key, f"{step} {metric}", info.kind, info.better, *values))
    changes += _output_changes(old, new)
    for runner in runners:
        for stat, better in LATENCY:
            values = old_latency[runner].get(stat), new_latency[runner].get(stat)
            changes.append(Change(f"latency.{runner}.{stat}", f"{runner} {stat}", "ms", better, *values))
    old_tpu, new_tpu = _edgetpu(old), _edgetpu(new)
    for figure, kind, better in EDGETPU:
        values = old_tpu.get(figure), new_tpu.get(figure)
        if values != (None, None):
            changes.append(Change(f"edgetpu.{figure}", f"Edge TPU {figure}", kind, better, *values))
    for artifact in ARTIFACTS:
        values = _bytes(old, artifact), _bytes(new, artifact)
        if values != (None, None):
            changes.append(Change(f"artifacts.{artifact}.bytes", f"{artifact} bytes", "bytes", "lower", *values))
    only_old = [f"comparison {a} -> {b}" for a, b in old_pairs if (a, b) not in new_pairs]
    only_old += [f"runner {runner}" for runner in old_latency if runner not in new_latency]
    only_new = [f"comparison {a} -> {b}" for a, b in new_pairs if (a, b) not in old_pairs]
    only_new += [f"runner {runner}" for runner in new_latency if runner not in old_latency]
    return ReportDiff(old_name, new_name, old.get("created_utc"), new.get("created_utc"), changes, only_old, only_new)


def _output_changes(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Each output's task metrics of source -> tflite-int8 that both reports measured (schema 2)."""
    old_outputs, new_outputs = drift_outputs(old), drift_outputs(new)
    changes = []
    for name, entry in old_outputs.items():
        if name not in new_outputs:
            continue
        for metric in TASK_METRIC_NAMES.get(entry["task"], ()):
            values = entry["metrics"].get(metric), new_outputs[name]["metrics"].get(metric)
            info = CATALOG[metric]
            if info.better is not None and None not in values:
                key = f"outputs.{name}.{metric}"
                changes.append(Change(key, f"output {name} {metric}", info.kind, info.better, *values))
    return changes


def baseline_values(baseline: dict[str, Any]) -> dict[str, float | None]:
    """What relative gates start from: `accuracy` (accuracy_candidate of source -> tflite-int8, None without labels
    or without that comparison) and `latency_p50_ms[RUNNER]` for every runner the baseline timed."""
    metrics = drift_comparison(baseline.get("comparisons") or []).get("metrics") or {}
    values: dict[str, float | None] = {"accuracy": metrics.get("accuracy_candidate")}
    for runner, stats in (baseline.get("latency") or {}).items():
        values[f"latency_p50_ms[{runner}]"] = stats.get("p50_ms")
    return values


def _pairs(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["reference"], c["candidate"]): c.get("metrics") or {} for c in report.get("comparisons") or []}


def _edgetpu(report: dict[str, Any]) -> dict[str, Any]:
    section = report.get("edgetpu") or {}
    if section.get("mode") == "off":
        return {}
    targets = (section.get("latency") or {}).get("targets", {})
    return {**section, **{f"predicted_ms[{target}]": found["predicted_ms"] for target, found in targets.items()}}


def _bytes(report: dict[str, Any], artifact: str) -> int | None:
    entry = (report.get("artifacts") or {}).get(artifact)
    return entry.get("bytes") if entry else None


def _show(kind: Kind, value: float | bool | None) -> str:
    if value is None:
        return "n/a"
    if kind == "verdict":
        return "PASSED" if value else "FAILED"
    return {
        "fraction": lambda v: f"{100 * v:.2f}%",
        "pp": lambda v: f"{v:.2f} pp",
        "ratio": lambda v: f"{v:.6f}",
        "db": lambda v: f"{v:.1f} dB",
        "ms": lambda v: f"{v:.4g} ms",
        "count": lambda v: f"{int(v)}" if float(v).is_integer() else f"{v:.4g}",
        "units": lambda v: f"{v:.4g}",
        "bytes": lambda v: f"{int(v):,} B",
    }[kind](value)


def _show_delta(kind: Kind, delta: float) -> str:
    return {
        "fraction": lambda d: f"{100 * d:+.2f} pp",
        "pp": lambda d: f"{d:+.2f} pp",
        "ratio": lambda d: f"{d:+.6f}",
        "db": lambda d: f"{d:+.1f} dB",
        "ms": lambda d: f"{d:+.4g} ms",
        "count": lambda d: f"{int(d):+d}" if float(d).is_integer() else f"{d:+.4g}",
        "units": lambda d: f"{d:+.4g}",
        "bytes": lambda d: f"{int(d):+,} B",
    }[kind](delta)
