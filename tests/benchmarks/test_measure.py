"""benchmarks/measure.py's refusal of bad input: exit code 2 and one sentence, never a traceback."""

from __future__ import annotations

import pytest

from benchmarks.measure import Refused, refusing


def test_a_refusal_ends_the_script_with_exit_code_2_and_its_sentence_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as ended, refusing():
        raise Refused("model.tflite is missing: run `python -m benchmarks.edgetpu_zoo` first")
    assert ended.value.code == 2 and ended.value.__suppress_context__  # no traceback of the Refused
    err = capsys.readouterr().err
    assert err == "model.tflite is missing: run `python -m benchmarks.edgetpu_zoo` first\n"


def test_other_errors_pass_through() -> None:
    with pytest.raises(ValueError), refusing():
        raise ValueError("a bug of the script's own")
