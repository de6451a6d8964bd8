"""PyTorch frontend: an nn.Module (entry point + state_dict), a TorchScript file or an ExportedProgram (.pt2)
-> ONNX with the recipe's static shapes -> the ONNX frontend.

Exporter: `torch.onnx.export(..., dynamo=True)` (torch.export based, the maintained path; it needs onnxscript)
for modules and ExportedPrograms. A TorchScript module cannot go through torch.export, so it takes the
TorchScript-based exporter (`dynamo=False`), the only one that accepts it. Both were checked with torch 2.13.0.
Pickled whole modules are refused: `torch.load` runs with `weights_only=True` everywhere, including inside
`torch.export.load`, which would otherwise unpickle parts of a .pt2 with weights_only=False (see _load_exported).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import os
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from compiler_kit.errors import BadInputError, describe_exception
from compiler_kit.frontends.base import DEFAULT_OPTIONS, ConvertOptions, FloatModel, refuse_non_finite
from compiler_kit.frontends.onnx import convert_onnx
from compiler_kit.recipe import InputSpec, Source

EXPORTED_ONNX, EXPORT_LOG = "model.onnx", "torch_export.log"
# While the first is set, torch.load ignores weights_only=False; the second would ask for the opposite.
_FORCE_WEIGHTS_ONLY, _FORCE_NO_WEIGHTS_ONLY = "TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


_SAVE_AGAIN = "save it again with torch.save (a state_dict), torch.jit.save or torch.export.save"
_SAVE_STATE_DICT = (
    "save the module's state_dict alone: torch.save(model.state_dict(), path) (from a training checkpoint, save its "
    "state_dict entry, e.g. checkpoint['model'])"
)
_MATCHING_WEIGHTS = "give the weights saved from this module (source.entry_point builds it with the same arguments?)"


def load_torch_model(source: Source) -> Any:
    """The model as the recipe names it: an nn.Module, a ScriptModule or an ExportedProgram, with finite weights."""
    if source.entry_point:
        module = module_from_entry_point(source.entry_point, source.recipe_dir)
        if source.weights:
            load_weights(module, source.weights)
        refuse_non_finite(_non_finite(_named_tensors(module)), source.weights or f"entry point '{source.entry_point}'")
        return module
    assert source.path is not None
    model = load_torch_file(source.path)
    refuse_non_finite(_non_finite(_named_tensors(model)), source.path)
    return model


def _named_tensors(model: Any) -> dict[str, Any]:
    """Parameters and buffers by name, plus an ExportedProgram's lifted constants (tensors its code creates)."""
    import torch

    if isinstance(model, torch.export.ExportedProgram):
        return {**model.state_dict, **model.constants}
    return model.state_dict()


def _non_finite(tensors: dict[str, Any]) -> list[str]:
    import torch

    return [
        name
        for name, value in tensors.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]


def runnable(model: Any) -> Any:
    """Something to call with tensors: an ExportedProgram runs through its module()."""
    import torch

    if isinstance(model, torch.export.ExportedProgram):
        return model.module()
    return model.eval()


def named_outputs(outputs: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """A module's return value as (name, tensor) pairs, in the order the ONNX exporter flattens it (torch's pytree
    order: depth first through tuples, lists and dicts in insertion order). Names: a dict's keys (joined by '.'
    when nested), `output_<k>` for the k-th item of a tuple or list, `output` for a lone tensor."""
    if isinstance(outputs, dict):
        items = [(f"{prefix}{key}", value) for key, value in outputs.items()]
    elif isinstance(outputs, list | tuple):
        items = [(f"{prefix}output_{k}" if not prefix else f"{prefix}{k}", value) for k, value in enumerate(outputs)]
    else:
        return [(prefix.rstrip(".") or "output", outputs)]
    return [pair for name, value in items for pair in named_outputs(value, f"{name}.")]


def module_from_entry_point(entry_point: str, recipe_dir: Path | None) -> Any:
    import torch

    module_name, _, attribute = entry_point.partition(":")
    extra = [str(p) for p in (recipe_dir, Path.cwd()) if p is not None and str(p) not in sys.path]
    sys.path[:0] = extra
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
        module = factory()
    except Exception as exc:  # ImportError, AttributeError, or anything the factory raises
        raise BadInputError(
            f"entry point '{entry_point}' failed: {type(exc).__name__}: {exc}",
            fix="source.entry_point must be 'package.module:factory', importable from the recipe's folder or "
            "the working directory, and the factory must build the model without arguments",
        ) from None
    finally:
        del sys.path[: len(extra)]
    if not isinstance(module, torch.nn.Module):
        raise BadInputError(
            f"entry point '{entry_point}' returned a {type(module).__name__}, not a torch.nn.Module",
            fix="point source.entry_point at a class or function that returns the nn.Module",
        )
    return module


def _safe_load(path: Path) -> Any:
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported operand" in str(exc):  # an opcode torch.save never writes: garbage, ONNX, a raw pickle
            raise BadInputError(
                "not a readable PyTorch file (neither a torch.save archive nor a pickle torch.load reads safely)",
                path=path,
                fix=_SAVE_AGAIN,
            ) from None
        raise _unsafe_pickle(path) from None
    except Exception as exc:
        raise BadInputError(
            f"not a readable PyTorch file ({describe_exception(exc)})", path=path, fix=_SAVE_AGAIN
        ) from None


def _unsafe_pickle(path: Path) -> BadInputError:
    return BadInputError(
        "loading this file would need unsafe unpickling (it holds Python objects, e.g. a whole pickled module)",
        path=path,
        fix="save only the weights (torch.save(model.state_dict(), ...)) and name the module with "
        "source.entry_point, or save TorchScript / torch.export (.pt2)",
    )


def load_weights(module: Any, path: Path) -> None:
    if not path.is_file():
        raise BadInputError("weights file not found", path=path, fix="check source.weights in the recipe")
    state = _safe_load(path)
    if not isinstance(state, dict):
        raise BadInputError(
            f"the weights file holds a {type(state).__name__}, not a state_dict", path=path, fix=_SAVE_STATE_DICT
        )
    expected = module.state_dict()
    _refuse_non_tensors(state, expected, path)
    _refuse_other_shapes(state, expected, path)
    # strict=False lets torch decide what may be absent (BatchNorm fills in num_batches_tracked when the state_dict
    # has no version for it: a plain dict, or torch < 0.4.1); what it still reports is refused, as strict=True would.
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise BadInputError(
            f"the weights do not match the module: key '{result.missing_keys[0]}' is missing",
            path=path,
            fix=_MATCHING_WEIGHTS,
        )
    if result.unexpected_keys:
        raise BadInputError(
            f"the weights do not match the module: unexpected key '{result.unexpected_keys[0]}'",
            path=path,
            fix=_MATCHING_WEIGHTS,
        )


def _refuse_non_tensors(state: dict[Any, Any], expected: dict[str, Any], path: Path) -> None:
    """load_state_dict copies only tensors into parameters and buffers; the one entry that may hold any value is a
    module's extra state (get_extra_state), which the module's own state_dict has as a non-tensor too."""
    import torch

    extra_state = {key for key, value in expected.items() if not isinstance(value, torch.Tensor)}
    odd = [key for key, value in state.items() if not isinstance(value, torch.Tensor) and key not in extra_state]
    if odd:
        listed = ", ".join(f"'{key}' ({type(state[key]).__name__})" for key in odd[:5])
        raise BadInputError(
            f"the weights file holds values that are not tensors: {listed}",
            path=path,
            fix=_SAVE_STATE_DICT,
        )


def _refuse_other_shapes(state: dict[Any, Any], expected: dict[str, Any], path: Path) -> None:
    import torch

    for key, tensor in expected.items():
        if isinstance(tensor, torch.Tensor) and key in state and state[key].shape != tensor.shape:
            raise BadInputError(
                f"the weights do not match the module: '{key}' has shape {list(state[key].shape)} in the file "
                f"and {list(tensor.shape)} in the module",
                path=path,
                fix=_MATCHING_WEIGHTS,
            )


def load_torch_file(path: Path) -> Any:
    if not path.is_file():
        raise BadInputError("model file not found", path=path, fix="check source.path in the recipe")
    return _load_exported(path) if path.suffix == ".pt2" else _load_torchscript(path)


def _load_torchscript(path: Path) -> Any:
    import torch

    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        if not _is_torchscript_archive(path):
            _safe_load(path)  # a torch.save pickle raises the unsafe-unpickling error here
        raise _not_a_model(path, exc) from None


def _load_exported(path: Path) -> Any:
    """torch.export.load runs code from a hostile .pt2 three ways (checked with torch 2.13.0): it loads the native
    code of AOTInductor packages, pickle.loads "opaque" constants, and torch.loads pickled weights, constants and
    example inputs with weights_only=False. The first two are refused from the archive's records, the third is
    made weights-only."""
    import pickle

    import torch

    _refuse_code_in_exported_program(path)
    try:
        with _torch_load_weights_only():
            return torch.export.load(str(path))
    except pickle.UnpicklingError:  # torch.load refused a pickled part: it holds Python objects
        raise _unsafe_pickle(path) from None
    except Exception as exc:
        raise _not_a_model(path, exc) from None


def _not_a_model(path: Path, exc: Exception) -> BadInputError:
    return BadInputError(
        f"not a TorchScript file or ExportedProgram ({describe_exception(exc)})",
        path=path,
        fix="save with torch.jit.save / torch.export.save, or use source.entry_point (+ weights)",
    )


def _refuse_code_in_exported_program(path: Path) -> None:
    """Refuse AOTInductor packages and opaque constants, from the records as torch's own reader lists them (a
    file that reader cannot open goes down torch.export.load's legacy zip path, which only calls torch.load)."""
    import torch
    from torch.export.pt2_archive.constants import AOTINDUCTOR_DIR, OPAQUE_OBJ_FILENAME_PREFIX

    try:
        records = torch._C.PyTorchFileReader(str(path)).get_all_records()
    except RuntimeError:
        return
    if unsafe := [name for name in records if AOTINDUCTOR_DIR in name or OPAQUE_OBJ_FILENAME_PREFIX in name]:
        raise BadInputError(
            f"the ExportedProgram holds compiled code or pickled Python objects ('{unsafe[0]}'): loading it "
            "could run arbitrary code",
            path=path,
            fix="save the model with torch.export.save (no AOTInductor package, no opaque objects), or name the "
            "module with source.entry_point (+ weights)",
        )


@contextlib.contextmanager
def _torch_load_weights_only() -> Iterator[None]:
    """Every torch.load in the block is weights_only, whatever its caller asks (torch.export.load asks for
    weights_only=False for pickled weights and constants, and retries example inputs that way)."""
    saved = {name: os.environ.pop(name, None) for name in (_FORCE_WEIGHTS_ONLY, _FORCE_NO_WEIGHTS_ONLY)}
    os.environ[_FORCE_WEIGHTS_ONLY] = "1"
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def _is_torchscript_archive(path: Path) -> bool:
    """A torch.jit.save zip (it has constants.pkl), whose own load error says more than torch.load's."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def export_onnx(model: Any, inputs: list[InputSpec], path: Path, log_path: Path) -> None:
    import torch

    examples = tuple(torch.zeros(spec.shape) for spec in inputs)
    names = [spec.name for spec in inputs]
    scripted = isinstance(model, torch.jit.ScriptModule)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            with torch.no_grad():  # the outputs' names: the runners name the module's outputs the same way
                output_names = [name for name, _ in named_outputs(runnable(model)(*examples))]
            torch.onnx.export(
                model if scripted or isinstance(model, torch.export.ExportedProgram) else model.eval(),
                examples,
                str(path),
                input_names=names,
                output_names=output_names,
                dynamo=not scripted,
                external_data=False,  # one self-contained file; edge models are far below protobuf's 2 GB
            )
    except Exception as exc:
        cause = exc.__cause__ or exc  # the dynamo exporter wraps the model's own error in a generic preamble
        raise BadInputError(
            f"the model does not run on inputs of shape {[spec.shape for spec in inputs]}: {describe_exception(cause)}",
            fix="give inputs[].shape in the model's own layout (NCHW for most torch models), batch 1",
        ) from None
    finally:
        log_path.write_text(log.getvalue())


class TorchFrontend:
    def convert(
        self,
        source: Source,
        inputs: list[InputSpec],
        out_dir: Path,
        options: ConvertOptions = DEFAULT_OPTIONS,
    ) -> FloatModel:
        export_onnx(load_torch_model(source), inputs, out_dir / EXPORTED_ONNX, out_dir / EXPORT_LOG)
        float_model = convert_onnx(out_dir / EXPORTED_ONNX, inputs, out_dir, options)
        return dataclasses.replace(float_model, intermediates={"onnx": EXPORTED_ONNX})
