"""The report as ONE self-contained HTML page: the shared tables plus plots drawn here as inline SVG.

No network at all (no CDN, fonts or scripts): the page is a build artifact that must open offline, years later.
Every piece of text from the report goes through `html.escape`.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Any

from compiler_kit.report.render import _overview, verdict
from compiler_kit.report.tables import (
    Table,
    artifacts_table,
    budget_section,
    drift_table,
    edgetpu_latency_caption,
    edgetpu_latency_table,
    edgetpu_summary,
    edgetpu_table,
    gates_table,
    latency_table,
    legalization_table,
    outputs_table,
    tune_table,
    worst_layers_table,
)

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; padding: 0 1em; }
h1 { padding: .4em .6em; border-radius: 6px; color: #fff; }
h1.passed { background: #2e7d32; } h1.failed { background: #c62828; }
table { border-collapse: collapse; margin: .6em 0 1em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f1f1f1; }
tr.pass td { background: #e8f5e9; } tr.fail td { background: #ffcdd2; font-weight: bold; }
svg.plot { display: block; margin: .6em 0 1.2em; font: 11px system-ui, sans-serif; background: #fafafa; }
svg.plot .bar { fill: #4c78a8; } svg.plot .worst { fill: #e45756; } svg.plot .axis { stroke: #999; }
svg.plot .grid { stroke: #e2e2e2; } svg.plot .box { fill: #9ecae9; stroke: #4c78a8; }
svg.plot .first { fill: #f58518; } svg.plot .sample { fill: #4c78a8; fill-opacity: .45; }
footer { color: #777; font-size: 12px; margin-top: 2em; }
"""

WIDTH, LEFT = 900, 170  # plot width and the left margin for row labels


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _table(table: Table) -> str:
    headers, rows = table
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(f"<tr{_row_class(row)}>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _row_class(row: list[str]) -> str:
    """Gate rows end in pass/FAIL: colour them."""
    return {"pass": ' class="pass"', "FAIL": ' class="fail"'}.get(row[-1], "")


def _svg(kind: str, title: str, height: float, body: str) -> str:
    return (
        f'<svg class="plot" data-plot="{kind}" role="img" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}"><title>{_e(title)}</title>{body}</svg>'
    )


def _text(x: float, y: float, text: Any, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{_e(text)}</text>'


def _el(tag: str, inner: str = "", **attrs: Any) -> str:
    """An SVG element; `class_` becomes class, `fill_opacity` fill-opacity, floats get one decimal."""
    text = "".join(
        f' {k.rstrip("_").replace("_", "-")}="{f"{v:.1f}" if isinstance(v, float) else _e(v)}"'
        for k, v in attrs.items()
    )
    return f"<{tag}{text}>{inner}</{tag}>"


def _tip(text: str) -> str:
    return f"<title>{_e(text)}</title>"


def _hbars(kind: str, title: str, items: list[tuple[str, float | None]], unit: str) -> str:
    """Horizontal bars, one labelled row per item, linear scale from 0."""
    top = max([v for _, v in items if v is not None] + [1e-9])
    span, parts = WIDTH - LEFT - 90, []
    for i, (label, value) in enumerate(items):
        y, w = 10.0 + 26 * i, span * (value or 0) / top
        shown = "n/a" if value is None else f"{value:.1f} {unit}"
        parts.append(_text(LEFT - 6, y + 14, label, "end"))
        parts.append(_el("rect", _tip(f"{label}: {shown}"), class_="bar", x=LEFT, y=y, width=float(w), height=18))
        parts.append(_text(LEFT + w + 5, y + 14, shown))
    return _svg(kind, title, 20 + 26 * len(items), "".join(parts))


def _drift_plot(report: dict[str, Any]) -> str:
    items = [(f"{c['reference']} -> {c['candidate']}", c["metrics"].get("snr_db")) for c in report["comparisons"]]
    return _hbars("drift", "SNR in dB of each comparison (higher is closer)", items, "dB")


def _layers_plot(report: dict[str, Any]) -> str:
    layers, worst = report["layers"], set(report.get("worst_layers", []))
    # The axis stops at 100 dB: an exact layer (capped at 200 dB) would flatten every other bar.
    height, base, top = 260, 230.0, min(max([layer["snr_db"] or 0 for layer in layers] + [1e-9]), 100.0)
    step = (WIDTH - 60) / len(layers)
    parts = [_el("line", class_="axis", x1=50, y1=base, x2=WIDTH - 10, y2=base)]
    for k in range(5):
        y = base - (base - 20) * k / 4
        parts.append(_el("line", class_="grid", x1=50, y1=y, x2=WIDTH - 10, y2=y))
        parts.append(_text(46, y + 4, f"{top * k / 4:.3g}", "end"))
    for i, layer in enumerate(layers):
        h, x = (base - 20) * min(layer["snr_db"] or 0, top) / top, 50 + step * i
        tip = _tip(f"#{i} {layer['name']} ({layer['op']}): {_num(layer['snr_db'])} dB")
        cls = "worst" if layer["name"] in worst else "bar"
        parts.append(_el("rect", tip, class_=cls, x=x + step * 0.1, y=base - h, width=step * 0.8, height=float(h)))
    parts.append(
        _text(
            50,
            height - 12,
            "layers in execution order (red: the five worst; hover for names)  ·  y: SNR dB vs float, cut at 100",
        )
    )
    return _svg("layers", "Per-layer SNR in dB of the int8 model against the float one", height, "".join(parts))


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _log_ticks(lo: float, hi: float) -> list[float]:
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    return [m * 10.0**d for d in decades for m in (1, 2, 5) if lo <= m * 10.0**d <= hi]


def _latency_plot(report: dict[str, Any]) -> str:
    """Per runner on a log axis: a box p50..p90, a whisker to p99, the first inference, and the samples if any."""
    stats = report["latency"]
    values = [s[k] for s in stats.values() for k in ("first_ms", "p50_ms", "p99_ms")]
    values += [v for s in stats.values() for v in s.get("samples_ms") or []]
    lo, hi = min(v for v in values if v > 0) / 1.3, max(values) * 1.3
    span = WIDTH - LEFT - 20

    def x(v: float) -> float:
        return LEFT + span * math.log(max(v, lo) / lo) / math.log(hi / lo)

    height = 50 + 40 * len(stats)
    parts = []
    for tick in _log_ticks(lo, hi):
        parts.append(_el("line", class_="grid", x1=x(tick), y1=5, x2=x(tick), y2=height - 30))
        parts.append(_text(x(tick), height - 16, f"{tick:g} ms", "middle"))
    for i, (name, s) in enumerate(stats.items()):
        y, p50, p90, p99, first = 12.0 + 40 * i, *(x(s[k]) for k in ("p50_ms", "p90_ms", "p99_ms", "first_ms"))
        parts.append(_text(LEFT - 6, y + 15, name, "end"))
        samples = s.get("samples_ms") or []
        parts += [_el("circle", class_="sample", cx=x(v), cy=y + 4 + (j * 7) % 15, r=2) for j, v in enumerate(samples)]
        tip = f"{name}: p50 {s['p50_ms']:.4g}, p90 {s['p90_ms']:.4g}, p99 {s['p99_ms']:.4g} ms"
        parts.append(_el("line", class_="axis", x1=p50, y1=y + 11, x2=p99, y2=y + 11))
        parts.append(_el("rect", _tip(tip), class_="box", x=p50, y=y + 3, width=max(p90 - p50, 2.0), height=16))
        parts.append(_el("circle", _tip(f"first inference {s['first_ms']:.4g} ms"), class_="first", cx=first,
                         cy=y + 11, r=4))  # fmt: skip
    parts.append(_text(LEFT, height - 2, "box p50..p90, whisker to p99, orange: first inference, dots: samples"))
    return _svg("latency", "Latency per runner in ms (log scale)", height, "".join(parts))


def _confusion_plot(confusion: dict[str, Any]) -> str:
    classes, matrix = confusion["classes"], confusion["matrix"]
    n, cell = len(classes), min(36.0, 560 / max(len(classes), 1))
    top, left, peak = 40, 90, max([max(row) for row in matrix if row] + [1])
    middle = top + n * cell / 2
    parts = [
        _text(left + n * cell / 2, 14, f"candidate (columns): {confusion['candidate']}", "middle"),
        _text(
            14,
            middle,
            f"reference (rows): {confusion['reference']}",
            "middle",
            f' transform="rotate(-90 14 {middle:.1f})"',
        ),
    ]
    for i, label in enumerate(classes):
        parts.append(_text(left + cell * (i + 0.5), top - 6, label, "middle"))
        parts.append(_text(left - 6, top + cell * (i + 0.6), label, "end"))
        for j, count in enumerate(matrix[i]):
            tip = _tip(f"{classes[i]} -> {classes[j]}: {count}")
            opacity = f"{0.06 + 0.94 * count / peak:.2f}"
            colour = "#4c78a8" if i == j else "#e45756"
            parts.append(_el("rect", tip, x=left + cell * j, y=top + cell * i, width=cell, height=cell, fill=colour,
                             fill_opacity=opacity))  # fmt: skip
            if count:
                parts.append(_text(left + cell * (j + 0.5), top + cell * (i + 0.62), count, "middle"))
    title = f"Confusion: {confusion['reference']} prediction (rows) vs {confusion['candidate']} (columns)"
    return _svg("confusion", title, top + n * cell + 10, "".join(parts))


def _section(title: str, *parts: str) -> str:
    return f"<section><h2>{_e(title)}</h2>{''.join(parts)}</section>"


def _edgetpu(report: dict[str, Any]) -> str:
    failures = report["edgetpu"].get("failures") or []
    items = "".join(f"<li>{_e(f['message'])}: {_e(f['advice'])}</li>" for f in failures)
    table = edgetpu_table(report)
    summary = f"<p>{_e(edgetpu_summary(report))}</p>"
    predicted = ""
    if latency := report["edgetpu"].get("latency"):
        predicted = f"<p>{_e(edgetpu_latency_caption(latency))}</p>{_table(edgetpu_latency_table(latency))}"
    return _section(
        "Edge TPU", summary, predicted, f"<ul>{items}</ul>" if items else "", _table(table) if table[1] else ""
    )


def _budget(report: dict[str, Any]) -> str:
    if (section := budget_section(report)) is None:
        return ""
    lines, table = section
    paragraphs = "".join(f"<p>{_e(line)}</p>" for line in lines)
    return _section("Quantization error budget", paragraphs, _table(table) if table[1] else "")


def html(report: dict[str, Any]) -> str:
    """The whole report as one HTML page that needs nothing but a browser."""
    state = verdict(report)
    findings = "".join(f"<li>{_e(note)}</li>" for note in report["findings"])
    layers = report.get("layers")
    confusion = report.get("confusion")
    body = [
        f'<h1 class="{state.lower()}">ckit build {_e(report["name"])}: {state}</h1>',
        f"<p>{_e(_overview(report))}</p>",
        _section(
            "Stage-by-stage drift (verification set)",
            _table(drift_table(report)),
            _table(outputs) if (outputs := outputs_table(report))[1] else "",
            _drift_plot(report),
            f"<ul>{findings}</ul>" if findings else "",
        ),
        _section("Per-layer SNR along the graph", _layers_plot(report), _table(worst_layers_table(report)))
        if layers
        else "",
        _budget(report),
        _section("Latency on this CPU (batch 1)", _table(latency_table(report)), _latency_plot(report)),
        _section("Float vs int8 predictions", _confusion_plot(confusion)) if confusion else "",
        _section("Edge TPU legalization", _table(legalization))
        if (legalization := legalization_table(report))[1]
        else "",
        _edgetpu(report),
        _section("Gates", _table(gates_table(report)) if report["gates"] else "<p>No gates in the recipe.</p>"),
        _section("Artifacts", _table(artifacts_table(report))),
        "<footer>" + " · ".join(f"{_e(k)} {_e(v)}" for k, v in report["tools"].items()) + "</footer>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>ckit build {_e(report['name'])}: {state}</title><style>{CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def tune_page(tune: dict[str, Any]) -> str:
    """`ckit tune`'s trials as one HTML page: the table and each trial's int8 SNR as bars."""
    name = Path(tune["recipe"]).name
    bars = [(trial["name"], trial["snr_db"]) for trial in tune["trials"]]
    chosen = f"Chosen: {tune['best']}." if tune["best"] else "No trial built."
    body = [
        f'<h1 class="{"passed" if tune["best"] else "failed"}">ckit tune {_e(name)}</h1>',
        f"<p>{_e(chosen)}</p>",
        _section("Trials", _table(tune_table(tune)), _hbars("tune", "int8 SNR by trial", bars, "dB")),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>ckit tune {_e(name)}</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
