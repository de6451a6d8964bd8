"""A thin editing layer over an ONNX model for the legalization rewrites: who produces a value, its static shape,
constant values, fresh unique names, and node insertion that keeps the graph topologically sorted. A graph may carry
calibration data for the rewrites that need it (bias correction)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class RemedyData:
    """What a data-driven remedy sees: calibration samples of the model's (single) input, in the model's own layout
    and shape, and whether the quantizer gives weights one scale per tensor rather than one per output channel."""

    samples: Iterable[np.ndarray]  # iterated once each time a remedy runs (a Dataset, a list)
    per_tensor_weights: bool = False


class Graph:
    """The main graph of one ONNX model (shapes inferred once, on the model with the recipe's static input, when a
    rewrite first asks), and the calibration data when the build has some for the remedies."""

    def __init__(self, model: Any, data: RemedyData | None = None) -> None:
        self.model = model
        self.data = data
        self.graph = model.graph
        self._shapes: dict[str, list[int] | None] | None = None
        self.constants = {init.name: init for init in self.graph.initializer}
        self._taken = {name for node in self.graph.node for name in (node.name, *node.output)}
        self._taken |= set(self.constants) | {value.name for value in self.graph.input}
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self._pending: list[Any] = []

    def producer(self, name: str) -> Any | None:
        return next((node for node in self.graph.node if name in node.output), None)

    def single_consumer(self, name: str) -> Any | None:
        """The one node that reads `name`, when exactly one does and it is no model output."""
        consumers = [node for node in self.graph.node if name in node.input]
        outputs = {output.name for output in self.graph.output}
        return consumers[0] if len(consumers) == 1 and name not in outputs else None

    def shape(self, name: str) -> list[int] | None:
        """The value's shape when every dimension is a known positive number. Shape inference runs at the first
        question, not in the constructor: most rewrites find nothing to ask about, and inferring a large model's
        shapes for each of them cost a second (RegNet-Y 400MF). Every rewrite asks before it edits the graph, and
        the rewrites keep the shape of every value they keep, so the shapes are those of the model as given."""
        if self._shapes is None:
            import onnx

            inferred = onnx.shape_inference.infer_shapes(self.model)
            self._shapes = {
                value.name: _static_dims(value)
                for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
            }
        return self._shapes.get(name)

    def constant(self, name: str) -> np.ndarray | None:
        """An initializer's (or a Constant node's) value, or None when the value is computed."""
        from onnx import numpy_helper

        if name in self.constants:
            return numpy_helper.to_array(self.constants[name])
        node = self.producer(name)
        if node is not None and node.op_type == "Constant":
            value = next((a for a in node.attribute if a.name == "value"), None)
            return numpy_helper.to_array(value.t) if value is not None else None
        return None

    def fresh(self, base: str) -> str:
        """A value or node name nobody uses yet."""
        name, suffix = base, 0
        while name in self._taken:
            suffix += 1
            name = f"{base}_{suffix}"
        self._taken.add(name)
        return name

    def add_constant(self, base: str, value: npt.ArrayLike) -> str:
        from onnx import numpy_helper

        name = self.fresh(base)
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        self.constants[name] = self.graph.initializer[-1]
        return name

    def node(self, op_type: str, inputs: list[str], base: str, **attributes: Any) -> str:
        """Make a node with one fresh output, placed by `replace`; returns the output's name."""
        return self.nodes(op_type, inputs, base, 1, **attributes)[0]

    def nodes(self, op_type: str, inputs: list[str], base: str, outputs: int, **attributes: Any) -> list[str]:
        """Make a node with `outputs` fresh outputs, placed by `replace`; returns their names."""
        from onnx import helper

        names = [self.fresh(f"{base}_out") for _ in range(outputs)]
        self._pending.append(helper.make_node(op_type, inputs, names, name=self.fresh(base), **attributes))
        return names

    def insert_after(
        self, anchor: Any, op_type: str, inputs: list[str], outputs: list[str], base: str, **attributes: Any
    ):
        """A node with the given outputs, placed right after `anchor` (which produces its inputs)."""
        from onnx import helper

        new = helper.make_node(op_type, inputs, outputs, name=self.fresh(base), **attributes)
        self.graph.node.insert(list(self.graph.node).index(anchor) + 1, new)

    def replace(self, old: Any, make: Any) -> None:
        """Run `make()` (which creates nodes with `node`), then put those nodes where `old` was and drop `old`.
        `make` returns the value that stands for old's single output, which keeps its name for consumers."""
        self._pending = []
        result = make()
        made = self._pending
        self._pending = []
        last = next(n for n in made if result in n.output)
        last.output[list(last.output).index(result)] = old.output[0]
        index = list(self.graph.node).index(old)
        del self.graph.node[index]
        for offset, new in enumerate(made):
            self.graph.node.insert(index + offset, new)


def attribute(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    found = next((a for a in node.attribute if a.name == name), None)
    return default if found is None else helper.get_attribute_value(found)


def set_attribute(node: Any, name: str, value: Any) -> None:
    from onnx import helper

    remove_attribute(node, name)
    node.attribute.append(helper.make_attribute(name, value))


def remove_attribute(node: Any, name: str) -> None:
    for index, found in enumerate(node.attribute):
        if found.name == name:
            del node.attribute[index]
            return


def _static_dims(value: Any) -> list[int] | None:
    dims = value.type.tensor_type.shape.dim
    if not value.type.tensor_type.HasField("shape"):
        return None
    found = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
    return found if all(d > 0 for d in found) else None
