"""The build report: data first (report.json), rendered as Markdown and as a terminal summary."""

from __future__ import annotations

import json
from typing import Any

from compiler_kit.artifacts import BuildFolder
from compiler_kit.errors import DiskFullError, disk_full_as
from compiler_kit.report.document import SCHEMA_VERSION, build_report, edgetpu_findings, leak_findings
from compiler_kit.report.html import html
from compiler_kit.report.render import markdown, terminal_summary

REPORT_JSON, REPORT_MD, REPORT_HTML = "report.json", "report.md", "report.html"


def write_reports(report: dict[str, Any], folder: BuildFolder) -> None:
    """All three or none: a report.json that says passed beside a missing report.html (the disk filled up between
    them) would be a verdict nobody can read in full. Each file is written atomically; a failure removes the ones
    already written."""
    texts = {
        REPORT_JSON: json.dumps(report, indent=2, allow_nan=False) + "\n",
        REPORT_MD: markdown(report),
        REPORT_HTML: html(report),
    }
    needed = sum(len(text.encode()) for text in texts.values())
    try:
        with disk_full_as(folder.root, "writing the reports", lambda: needed):
            for name, text in texts.items():
                folder.write_text(name, text)
    except (OSError, DiskFullError):
        for name in texts:
            folder.remove(name)
        raise


__all__ = [
    "REPORT_HTML",
    "REPORT_JSON",
    "REPORT_MD",
    "SCHEMA_VERSION",
    "build_report",
    "edgetpu_findings",
    "leak_findings",
    "terminal_summary",
    "write_reports",
]
