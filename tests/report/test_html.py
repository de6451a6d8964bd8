"""report.html of the session's real build: every section, inline SVG plots, nothing fetched from the network,
escaped text, gate colouring, and a real headless Chromium that renders the plots without errors."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from compiler_kit.report import REPORT_HTML, REPORT_MD
from compiler_kit.report.html import html

pytestmark = pytest.mark.slow  # every test reads the session's real build (conftest `built`)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SECTIONS = (
    "Stage-by-stage drift",
    "Per-layer SNR along the graph",
    "Latency on this CPU",
    "Edge TPU",
    "Gates",
    "Artifacts",
)
EVIL = "<script>window.__xss = 1</script>"


def enriched(report: dict) -> dict:
    """The real report plus the optional parts: a confusion matrix, latency samples and a hostile layer name."""
    report = copy.deepcopy(report)
    classes = [f"<{i}>" for i in range(10)]
    report["confusion"] = {
        "reference": "tflite-float",
        "candidate": "tflite-int8",
        "classes": classes,
        "matrix": [[30 if i == j else int(i == (j + 1) % 10) for j in range(10)] for i in range(10)],
    }
    stats = report["latency"]["tflite-int8"]
    stats["samples_ms"] = [stats["p50_ms"] * (1 + 0.02 * (k % 7)) for k in range(20)]
    worst = report["worst_layers"][0]
    for layer in report["layers"]:
        if layer["name"] == worst:
            layer["name"] = EVIL
    report["worst_layers"][0] = EVIL
    return report


def test_html_has_every_section_and_plot(built):
    page = html(built.report)
    assert page.startswith("<!DOCTYPE html>")
    assert "ckit build digits_keras: PASSED" in page
    for section in SECTIONS:
        assert f"<h2>{section}" in page
    plots = ["drift", "layers", "latency", *(["confusion"] if "confusion" in built.report else [])]
    assert re.findall(r'<svg class="plot" data-plot="(\w+)"', page) == plots
    assert page.count("<svg") == page.count("</svg>") == len(plots)
    assert re.findall(r'<svg class="plot"[^>]*><title>[^<]+</title>', page)  # every plot has a title
    assert len(re.findall(r'<svg class="plot"[^>]*><title>[^<]+</title>', page)) == len(plots)
    for comparison in built.report["comparisons"]:
        assert f"{comparison['reference']} -&gt; {comparison['candidate']}" in page


def test_html_without_the_optional_parts(built):
    report = copy.deepcopy(built.report)
    for key in ("confusion", "layers", "worst_layers"):
        report.pop(key, None)
    for stats in report["latency"].values():
        stats.pop("samples_ms", None)
    page = html(report)
    assert re.findall(r'<svg class="plot" data-plot="(\w+)"', page) == ["drift", "latency"]
    assert "Per-layer SNR" not in page
    assert 'class="sample"' not in page


def test_html_is_self_contained(built):
    page = html(enriched(built.report))
    assert "http://" not in page
    assert "https://" not in page
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert "@import" not in page
    assert "url(" not in page


def test_html_is_written_and_linked_from_markdown(built):
    assert (built.build_dir / REPORT_HTML).read_text(encoding="utf-8") == html(built.report)
    assert "Full report with plots: [report.html](report.html)" in (built.build_dir / REPORT_MD).read_text()


def test_html_colours_a_failed_gate(built):
    report = copy.deepcopy(built.report)
    report["gates"][0]["passed"] = False
    report["passed"] = False
    page = html(report)
    assert '<h1 class="failed">' in page
    assert "ckit build digits_keras: FAILED" in page
    assert page.count('<tr class="fail">') == 1
    assert page.count('<tr class="pass">') == len(report["gates"]) - 1
    assert 'class="fail"><td>' + report["gates"][0]["name"] in page


def test_html_escapes_the_report_text(built):
    page = html(enriched(built.report))
    assert EVIL not in page
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in page
    assert page.count('<svg class="plot" data-plot="confusion"') == 1
    assert "&lt;3&gt;" in page and "<3>" not in page
    assert page.count('class="sample"') >= 20


def render(browser, path: Path, shot: Path) -> tuple[list[str], list[str], list[tuple[str, dict | None]], object]:
    """Open `path` in a new page: its console errors and page errors, every URL it requested, each svg.plot's
    data-plot and bounding box, and window.__xss; a full-page screenshot goes to `shot`."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    plots = page.locator("svg.plot")
    boxes = [(plots.nth(i).get_attribute("data-plot"), plots.nth(i).bounding_box()) for i in range(plots.count())]
    xss = page.evaluate("window.__xss")
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    return errors, requests, boxes, xss


def test_html_renders_in_headless_chromium(built, tmp_path: Path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (Debian: apt-get install -y chromium): the page is not rendered")
    from playwright.sync_api import sync_playwright

    pages = {"built": built.build_dir / REPORT_HTML, "enriched": tmp_path / REPORT_HTML}
    pages["enriched"].write_text(html(enriched(built.report)), encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for name, path in pages.items():
                shot = tmp_path / f"report_{name}.png"
                errors, requests, boxes, xss = render(browser, path, shot)
                assert errors == [], name
                assert requests == [path.as_uri()], name  # the page fetches nothing else
                assert [kind for kind, _ in boxes][:3] == ["drift", "layers", "latency"], name
                assert "confusion" in [kind for kind, _ in boxes] or name == "built"
                for kind, box in boxes:
                    assert box is not None and box["width"] > 0 and box["height"] > 0, (name, kind)
                assert xss is None  # the hostile layer name did not run
                assert shot.stat().st_size > 10_000
        finally:
            browser.close()
