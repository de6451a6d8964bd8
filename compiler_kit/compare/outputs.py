"""Comparing two runners output by output: the generic metrics and the output's task metrics, per name.

Every output is judged with what it computes (compare/tasks.py): the recipe's `verify.task` says, or the kind is
inferred from the output's shape. The aggregate `metrics` of a comparison keep the keys of report schema 1, so old
readers and gates work on: the signal metrics (cosine, SNR, errors) are the WORST over the outputs, and top-1
agreement and accuracy are those of the labelled classification output (None without one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from compiler_kit.compare.catalog import worst
from compiler_kit.compare.metrics import METRICS
from compiler_kit.compare.tasks import TaskSpec, evaluate_task, infer_task, per_sample_summary
from compiler_kit.errors import BadInputError
from compiler_kit.recipe import OutputTask

_CLASSIFICATION_KEYS = ("top1_agreement", "accuracy_reference", "accuracy_candidate", "accuracy_drop_pp")


@dataclass(frozen=True)
class OutputTasks:
    """Each output's task, whether it was inferred, and which output the verification labels belong to."""

    specs: dict[str, TaskSpec]
    inferred: dict[str, bool]
    labelled: str | None

    def of_kind(self, kind: str) -> list[str]:
        return [name for name, spec in self.specs.items() if spec.kind == kind]

    def describe(self) -> dict[str, dict[str, Any]]:
        return {
            name: {"task": spec.kind, "inferred": self.inferred[name], "labels": name == self.labelled}
            for name, spec in self.specs.items()
        }


def resolve_tasks(
    declared: dict[str, OutputTask], shapes: dict[str, tuple[int, ...]], channels_last: bool, has_labels: bool
) -> OutputTasks:
    """The recipe's tasks by output name, each undeclared one inferred from its shape (per sample, no batch axis);
    `channels_last` says where a map's channels are (Keras models: last; ONNX and torch: first)."""
    refuse_unknown_outputs("verify.task", declared, list(shapes))
    specs, inferred = {}, {}
    for name, shape in shapes.items():
        task = declared.get(name) or OutputTask()
        channel_axis = -1 if channels_last or len(shape) < 3 else 0
        kind = task.kind or infer_task(shape, channel_axis)
        fields = task.model_dump(exclude={"kind", "labels"})
        specs[name] = TaskSpec(kind=kind, channel_axis=channel_axis, **fields)
        inferred[name] = task.kind is None
    if has_labels:
        return OutputTasks(specs, inferred, _labelled_output(declared, specs))
    return OutputTasks(specs, inferred, None)


def refuse_unknown_outputs(field: str, named: dict[str, Any], outputs: list[str]) -> None:
    """A recipe section keyed by output name must name outputs the model has."""
    if unknown := sorted(set(named) - set(outputs)):
        raise BadInputError(
            f"{field} names output '{unknown[0]}', which the model does not have",
            fix=f"use one of the model's outputs: {', '.join(outputs)}",
        )


def _labelled_output(declared: dict[str, OutputTask], specs: dict[str, TaskSpec]) -> str | None:
    if chosen := [name for name, task in declared.items() if task.labels]:
        return chosen[0]
    return next((name for name, spec in specs.items() if spec.kind == "classification"), None)


def compare_outputs(
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    tasks: OutputTasks,
    labels: np.ndarray | None,
    sample_names: list[str] | None = None,
) -> dict[str, Any]:
    """`{"metrics": aggregate (schema 1 keys), "outputs": {name: {task, metrics, per_sample}}}` of one pair."""
    outputs = {}
    for name, spec in tasks.specs.items():
        signal = {metric: fn(reference[name], candidate[name]) for metric, fn in METRICS.items()}
        result = _evaluate(reference, candidate, name, spec, labels if name == tasks.labelled else None)
        outputs[name] = {
            "task": spec.kind,
            "metrics": {**signal, **result.metrics},
            "per_sample": per_sample_summary(result, sample_names),
        }
    return {"metrics": _aggregate(outputs, tasks.labelled), "outputs": outputs}


def _evaluate(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], name: str, spec: TaskSpec, labels):
    try:
        return evaluate_task(reference, candidate, name, spec, labels)
    except ValueError as exc:  # a task that does not fit the output (a detection decoder, a class axis)
        raise BadInputError(
            f"verify.task.{name} ({spec.kind}) cannot judge output '{name}' of shape "
            f"{list(reference[name].shape[1:])}: {exc}",
            fix=f"set verify.task.{name} to the output's real task and its settings",
        ) from None


def _aggregate(outputs: dict[str, dict[str, Any]], labelled: str | None) -> dict[str, float | None]:
    aggregate: dict[str, float | None] = {}
    for metric in METRICS:
        values = [entry["metrics"][metric] for entry in outputs.values()]
        aggregate[metric] = worst(metric, values)
    classifier = labelled or next((name for name, entry in outputs.items() if entry["task"] == "classification"), None)
    for key in _CLASSIFICATION_KEYS:
        aggregate[key] = outputs[classifier]["metrics"].get(key) if classifier else None
    return aggregate


def constant_outputs(outputs: dict[str, np.ndarray]) -> list[str]:
    """The outputs whose value is the same for every sample, to float32 round-off: a degenerate model (untrained,
    collapsed, or blind to its input), whose drift metrics look perfect and mean nothing."""
    constant = []
    for name, y in outputs.items():
        if len(y) < 2:
            continue
        spread = float(np.max(np.abs(y - y[:1])))
        if spread <= 1e-6 * float(np.max(np.abs(y))) or spread == 0:
            constant.append(name)
    return constant
