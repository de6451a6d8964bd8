"""benchmarks/edgetpu_truth.py: the committed pairs and ground truth, and (when the published models are cached, see
`python -m benchmarks.edgetpu_truth populate`) the truth re-derived from them and ckit's prediction against it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks import edgetpu_truth as truth
from tests.edgetpu.tiny_tflite import TinyGraph

PAIRS = truth.load_pairs()
TRUTH = truth.load_truth()
VALID = [pair for pair in PAIRS if "invalid" not in TRUTH[pair.name]]


def test_every_pair_has_its_citation_and_its_ground_truth() -> None:
    assert {pair.name for pair in PAIRS} == set(TRUTH)
    assert {pair.role for pair in PAIRS} == set(truth.ROLES)
    for pair in PAIRS:
        assert pair.repo.startswith("google-coral/") and len(pair.commit) == 40, pair
        assert pair.compiled_path.endswith("_edgetpu.tflite") and len(pair.model_blob) == 40, pair
    for entry in (TRUTH[pair.name] for pair in VALID):
        assert entry["ops_on_edgetpu"] + entry["ops_on_cpu"] == entry["total_ops"]
        assert len(entry["cpu_ops"]) == entry["ops_on_cpu"] and entry["edgetpu_subgraphs"] == 1


def test_blob_ids_are_gits(tmp_path: Path) -> None:
    data = b"what git hashes\n"
    (tmp_path / "f").write_bytes(data)
    hashed = subprocess.run(["git", "hash-object", str(tmp_path / "f")], capture_output=True, text=True, check=True)
    assert truth.git_blob_id(data) == hashed.stdout.strip()


def test_a_compiled_file_whose_ops_the_input_lacks_is_not_a_pair(tmp_path: Path) -> None:
    def model(path: Path, operator: str) -> Path:
        graph = TinyGraph()
        x = graph.tensor("x", "int8", [1, 4], model_input=True)
        graph.op(operator, [x], [graph.tensor("y", "int8", [1, 4], model_output=True)])
        return graph.write(path)

    with pytest.raises(truth.NotAPair, match="DEQUANTIZE"):
        truth.compiler_verdict(model(tmp_path / "in.tflite", "RELU"), model(tmp_path / "out.tflite", "DEQUANTIZE"))


def test_an_uncached_pair_is_skipped_with_the_way_to_cache_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(truth, "CACHE", tmp_path)
    row = truth.compare(VALID[0], TRUTH[VALID[0].name])
    assert row["status"] == "skipped" and "populate" in row["why"]


def _cached(pairs: list[truth.Pair]) -> list[truth.Pair]:
    present = [pair for pair in pairs if pair.model.is_file() and pair.compiled.is_file()]
    if len(present) < len(pairs):
        pytest.skip(
            f"{len(pairs) - len(present)} published models not cached in {truth.CACHE}: run "
            "`python -m benchmarks.edgetpu_truth populate --mirror CLONE` with clones of google-coral/test_data and "
            "google-coral/edgetpu"
        )
    return present


def test_the_committed_truth_is_what_the_compiled_files_say() -> None:
    assert truth.derive(_cached(PAIRS))["models"] == TRUTH


@pytest.mark.parametrize("pair", VALID, ids=[pair.name for pair in VALID])
def test_the_prediction_is_the_compilers(pair: truth.Pair) -> None:
    """Dev and held-out pairs alike: which ops stay on the CPU, and the subgraph count."""
    (cached,) = _cached([pair])
    predicted = truth.predicted_verdict(cached.model)
    expected = TRUTH[pair.name]
    assert predicted["cpu_ops"] == expected["cpu_ops"]
    assert predicted["edgetpu_subgraphs"] == expected["edgetpu_subgraphs"]
