"""A .tflite model on the CPU through LiteRT (or tflite_runtime where only that is installed).

Integer I/O is hidden from callers: inputs are quantized and outputs dequantized with the model's own scale and
zero point, so an int8 model takes and returns the same float arrays as its float twin. Layout too: inputs arrive
in the source model's layout and outputs leave in it, whatever the converter did (onnx2tf makes NCHW NHWC).
Outputs are found through the model's signature, by the key the conversion recorded for each source output: the
order of the interpreter's output tensors is the converter's, not the source model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit import lazy
from compiler_kit.errors import BadInputError, describe_exception
from compiler_kit.frontends.base import ModelOutput, Perm
from compiler_kit.runners.base import Runner


def quantize_values(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float -> the tensor's integer type: round(x / scale) + zero_point (half to even), saturated."""
    return TensorCodec.of(detail).encode(x)


def dequantize_values(q: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """The tensor's integer type -> float32: (q - zero_point) * scale."""
    return TensorCodec.of(detail).decode(q)


@dataclass(frozen=True)
class TensorCodec:
    """Quantize and dequantize for one tensor, its parameters looked up once (a runner's `prepare`), not per call,
    and the arithmetic in place: `infer` runs once per verification sample, and on a small model the numpy calls
    around `invoke` cost more than the inference itself."""

    index: int
    dtype: np.dtype
    scale: float
    zero_point: int
    low: int
    high: int
    quantized: bool  # an integer type with a scale; else the values pass through

    @classmethod
    def of(cls, detail: dict[str, Any]) -> TensorCodec:
        dtype = np.dtype(detail["dtype"])
        scale, zero_point = detail["quantization"]
        quantized = bool(np.issubdtype(dtype, np.integer) and scale != 0)
        info = np.iinfo(dtype) if quantized else None
        low, high = (int(info.min), int(info.max)) if info else (0, 0)
        return cls(detail.get("index", -1), dtype, scale, zero_point, low, high, quantized)

    def encode(self, x: np.ndarray) -> np.ndarray:
        if not self.quantized:
            return np.ascontiguousarray(x, dtype=self.dtype)  # set_tensor copies it: no copy of our own
        scale, zero_point, low, high = self._operands
        q = np.divide(x, scale)
        np.rint(q, out=q)  # what np.round does with no decimals: half to even
        q += zero_point
        np.minimum(q, high, out=q)
        np.maximum(q, low, out=q)
        return q.astype(self.dtype)

    @cached_property
    def _operands(self) -> tuple[np.ndarray, ...]:
        """scale, zero point and limits as 0-d float32 arrays: numpy converts a Python number on every call (about a
        microsecond each, as much as the arithmetic on a small tensor), and float32 is the type it computes in
        with a Python float too, so the results are the same."""
        return tuple(np.array(value, np.float32) for value in (self.scale, self.zero_point, self.low, self.high))

    def decode(self, q: np.ndarray) -> np.ndarray:
        """`q` is get_tensor's own copy (of this tensor's dtype): a float32 result is returned as it is."""
        if not self.quantized:
            return q if q.dtype == np.float32 else q.astype(np.float32)
        if self._table is not None:  # 8-bit: one lookup instead of three passes
            return self._table.take(q.view(np.uint8))
        return self._dequantized(q)

    def _dequantized(self, q: np.ndarray) -> np.ndarray:
        y = q.astype(np.float32)
        y -= self.zero_point
        y *= self.scale
        return y

    @cached_property
    def _table(self) -> np.ndarray | None:
        """The dequantized value of every 8-bit code, by the code's unsigned byte: the same float32 arithmetic as
        `_dequantized`, done once."""
        if self.dtype.itemsize != 1:
            return None
        return self._dequantized(np.arange(256, dtype=np.uint8).view(self.dtype))


class LiteRtRunner(Runner):
    def __init__(
        self,
        name: str,
        model_path: Path,
        threads: int,
        input_perms: list[Perm] | None = None,
        outputs: list[ModelOutput] | None = None,
    ) -> None:
        super().__init__(name, threads)
        self.model_path = model_path
        self.input_perms = input_perms or []
        self.model_outputs = outputs  # None: the model's own signature keys and order, no permutation
        self.interpreter: Any = None
        self.runtime = ""

    def prepare_impl(self) -> list[str]:
        interpreter_class, self.runtime = lazy.litert_interpreter()
        try:
            self.interpreter = interpreter_class(
                model_path=str(self.model_path),
                num_threads=self.threads,
                experimental_delegates=self._delegates() or None,
            )
            self.interpreter.allocate_tensors()
        except RuntimeError as exc:
            raise self._refused(exc) from None
        self.inputs = self.interpreter.get_input_details()
        by_key = self._signature_outputs()
        outputs = self.model_outputs or [ModelOutput(key, key, None) for key in by_key]
        if missing := [output.key for output in outputs if output.key not in by_key]:
            raise BadInputError(
                f"the {self.name} model has no output {missing[0]} (it has {', '.join(by_key)})",
                path=self.model_path,
                fix="build again with --force: the model does not belong to this build",
            )
        self.outputs = [by_key[output.key] for output in outputs]
        # Per tensor, its codec and the axis move into the model's layout (inputs) or back out of it (outputs).
        input_perms = [*self.input_perms, *[None] * len(self.inputs)]
        self._feeds = [(TensorCodec.of(d), perm) for d, perm in zip(self.inputs, input_perms, strict=False)]
        self._fetches = [(TensorCodec.of(d), _inverse(o.perm)) for d, o in zip(self.outputs, outputs, strict=True)]
        return [output.name for output in outputs]

    def _signature_outputs(self) -> dict[str, dict[str, Any]]:
        """Output tensor details by signature key (a model without a signature: by tensor name)."""
        if self.interpreter.get_signature_list():
            runner = self.interpreter.get_signature_runner()
            details = runner.get_output_details()
            tensors = {detail["index"]: detail for detail in self.interpreter.get_output_details()}
            return {key: tensors[detail["index"]] for key, detail in details.items()}
        return {detail["name"]: detail for detail in self.interpreter.get_output_details()}

    def _delegates(self) -> list[Any]:
        """External delegates to run with; none here (the CPU), an accelerator's runner supplies its own."""
        return []

    def encode(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The feed as the model's own input tensors, quantized and in its layout. Inputs are matched by position:
        converters rename tensors (e.g. serving_default_image:0). A batch of samples encodes at once (axis 0)."""
        return [_to_model(codec, perm, x) for (codec, perm), x in zip(self._feeds, feed.values(), strict=True)]

    def decode(self, raw: list[np.ndarray]) -> list[np.ndarray]:
        """The model's output tensors (in `output_tensor_names` order) as float arrays in the source layout."""
        return [_to_source(codec, perm, q) for (codec, perm), q in zip(self._fetches, raw, strict=True)]

    @property
    def output_tensor_names(self) -> list[str]:
        return [detail["name"] for detail in self.outputs]

    # stage_impl and fetch_impl run once per sample: one loop each over the tensors, not encode's and decode's lists
    # on top of it (a microsecond a sample, a twentieth of a small model's inference).
    def stage_impl(self, feed: dict[str, np.ndarray]) -> None:
        set_tensor = self.interpreter.set_tensor
        for (codec, perm), x in zip(self._feeds, feed.values(), strict=True):
            set_tensor(codec.index, _to_model(codec, perm, x))

    def infer_impl(self, staged: None) -> None:
        try:
            self.interpreter.invoke()
        except RuntimeError as exc:
            raise self._refused(exc) from None

    def fetch_impl(self, raw: None) -> list[np.ndarray]:
        get_tensor = self.interpreter.get_tensor
        return [_to_source(codec, perm, get_tensor(codec.index)) for codec, perm in self._fetches]

    def _refused(self, exc: RuntimeError) -> BadInputError:
        """LiteRT refuses some models it was given (XNNPACK "failed to prepare" on a tensor whose int8 scale is
        absurd, e.g. a max-pool padded with -3.4e38): that is the model, not ckit."""
        return BadInputError(
            f"LiteRT cannot run the {self.name} model ({describe_exception(exc, last_line=True)})",
            path=self.model_path,
            fix="keep legalize.enabled on for ONNX and torch models (it removes the -inf padding that breaks "
            "int8 ranges); the report's edgetpu section and build.log name the ops",
        )

    def describe(self) -> dict[str, object]:
        return {
            "runtime": self.runtime,
            "version": lazy.version(self.runtime),
            "input_quantization": [_quantization(d) for d in self.inputs],
            "output_quantization": [_quantization(d) for d in self.outputs],
        }


def _inverse(perm: Perm) -> Perm:
    return None if perm is None else tuple(int(axis) for axis in np.argsort(perm))


def _quantization(detail: dict[str, Any]) -> dict[str, object]:
    scale, zero_point = detail["quantization"]
    return {"dtype": np.dtype(detail["dtype"]).name, "scale": float(scale), "zero_point": int(zero_point)}


def _to_model(codec: TensorCodec, perm: Perm, x: np.ndarray) -> np.ndarray:
    """A source-layout array as the model's input tensor."""
    return codec.encode(x if perm is None else np.ascontiguousarray(x.transpose(perm)))


def _to_source(codec: TensorCodec, perm: Perm, q: np.ndarray) -> np.ndarray:
    """A model's output tensor as a float array in the source layout."""
    y = codec.decode(q)
    return y if perm is None else np.ascontiguousarray(y.transpose(perm))
