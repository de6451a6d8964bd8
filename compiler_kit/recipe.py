"""The recipe: one YAML file that says how to take a float model to int8 and how to judge the result.

A recipe names the trained model (`source`) and the shape of what it eats (`inputs`), the data used to
calibrate the int8 ranges (`calibration`, drawn from training data, never from the evaluation split), the Edge
TPU rewrites of ONNX and torch graphs (`legalize`, on by default), the kind of integer model wanted
(`quantization`), the held-out data every runner is verified on (`verify`), the limits a build must meet
(`gates`) and where the artifacts go (`output`). Relative paths are relative to the recipe file.

Every section is validated here, before any framework is imported: a misspelled key, a wrong type or a missing
field stops the build with exit code 2 and a message that names the file, the line, the key and the fix.
`ckit schema` prints this schema as JSON Schema for editor completion.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from compiler_kit.errors import BadInputError
from compiler_kit.legalize.rewrites import REWRITES

EDGETPU_DEVICE = r"^(|:\d+|usb(:\d+)?|pci(:\d+)?)$"  # libedgetpu's device strings
DEVICE_RUNNER = "device:"  # a device's runners: device:NAME (its CPU) and device:NAME:edgetpu
DEVICE_FIX = "write --device ssh://user@host[:port]; a device's Python is a name or path (letters, digits, ./_+-)"
DEVICE_OPTION = {"url": "--device", "devices": "--device"}  # where a device's address comes from on the command line
S = TypeVar("S", bound=BaseModel)
RunnerName = Literal["source", "onnx", "tflite-float", "tflite-int8", "edgetpu"]
Layout = Literal["NHWC", "NCHW"]
IoType = Literal["int8", "uint8", "float32"]
# The cost model's targets (edgetpu/latency.py TARGET_SPECS): a USB Accelerator on an x86-64 desktop; the Dev Board
# (PCIe, Cortex-A53 host); an M.2 / Mini PCIe card in an x86-64 desktop.
EdgeTpuTarget = Literal["usb", "devboard", "pcie"]
REWRITE_NAMES = tuple(REWRITES)
# The quantization remedies of `legalize`: recipe field -> the opt-in rewrite it switches on.
REMEDY_REWRITES = {"equalize": "cross_layer_equalization", "bias_correction": "bias_correction"}
RewriteName = Literal[REWRITE_NAMES]  # type: ignore[valid-type]  # the legalization registry's names

# Limits on what a recipe may declare, so a typo or a hostile recipe is refused before anything allocates.
# One sample (batch 1) of at most 2**26 elements: 256 MiB as float32. Edge TPU models take images of a few
# megapixels at most (1920x1080x3 is 6.2M elements), so this leaves 10x headroom while one sample, its preprocessed
# copy and every runner's input buffer still fit a CI machine's memory; [1, 100000, 100000, 3] does not.
MAX_SAMPLE_ELEMENTS = 2**26
# TFLite kernels handle at most 6 dimensions (TRANSPOSE, broadcasting arithmetic); the Edge TPU maps 3 beyond
# size-1 outer ones, so a deeper input is a mistake.
MAX_RANK = 6
# Preprocessing runs in float32: a scale or mean beyond its range, or a std below its smallest normal number,
# turns every sample into Inf or NaN.
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38
Float32 = Annotated[float, Field(ge=-FLOAT32_MAX, le=FLOAT32_MAX)]
PositiveFloat32 = Annotated[float, Field(ge=FLOAT32_TINY, le=FLOAT32_MAX)]
# NumPy seeds its generators with non-negative integers only.
Seed = Annotated[int, Field(ge=0)]
# The Edge TPU compiler takes tensor names as one comma-separated argument; NUL cannot be passed in an argument.
TensorName = Annotated[str, Field(pattern=r"^[^,\x00]+$")]
# A recipe is a page of YAML (about 1 KiB), nested 4 levels deep; far more is a mistake or an attack on the parser
# (PyYAML builds nodes recursively, so deep nesting overflows Python's stack).
MAX_RECIPE_BYTES = 1 << 20
MAX_NESTING = 32
MAX_ERRORS_SHOWN, MAX_KEY_SHOWN = 20, 100
# Linux's NAME_MAX and PATH_MAX: beyond them every file call raises instead of answering "not found".
MAX_NAME_BYTES, MAX_PATH_BYTES = 255, 4096


def _resolve_against_recipe(path: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    resolved = path if path.is_absolute() or base is None else (Path(base) / path).resolve()
    longest_name = max((len(os.fsencode(part)) for part in resolved.parts), default=0)
    if len(os.fsencode(resolved)) > MAX_PATH_BYTES or longest_name > MAX_NAME_BYTES:
        raise ValueError(f"path too long (at most {MAX_NAME_BYTES} bytes a name, {MAX_PATH_BYTES} in all)")
    return resolved


RecipePath = Annotated[Path, AfterValidator(_resolve_against_recipe)]


class _Section(BaseModel):
    # NaN and Inf are never meaningful here: a NaN gate never fails, a NaN scale poisons every sample.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Source(_Section):
    """The trained float model, in the framework it was trained in.

    keras: `path` to a .keras or .h5 file. onnx: `path` to an .onnx file. torch: either `entry_point`
    ("package.module:factory", a callable returning an nn.Module; the recipe's folder and the working directory
    are importable) with an optional `weights` state_dict file, or `path` to a TorchScript file or an
    ExportedProgram (.pt2). Pickled whole modules are refused: unpickling can run arbitrary code.
    """

    framework: Literal["keras", "onnx", "torch"] = Field(description="Framework the model was trained in.")
    path: RecipePath | None = Field(None, description="Model file, relative to the recipe.")
    entry_point: str | None = Field(
        None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description="torch: package.module:factory."
    )
    weights: RecipePath | None = Field(None, description="torch: state_dict file for the entry point's module.")
    _recipe_dir: Path | None = PrivateAttr(None)

    @property
    def recipe_dir(self) -> Path | None:
        """The recipe's folder: entry points import from there (and from the working directory)."""
        return self._recipe_dir

    @model_validator(mode="after")
    def _one_way_to_name_the_model(self, info: ValidationInfo) -> Source:
        self._recipe_dir = (info.context or {}).get("base_dir")
        if self.framework != "torch" and (self.entry_point or self.weights or not self.path):
            raise ValueError(f"a {self.framework} source takes `path` only")
        if self.framework == "torch" and (self.path is None) == (self.entry_point is None):
            raise ValueError("a torch source takes either `path` (TorchScript or .pt2) or `entry_point`")
        if self.weights and not self.entry_point:
            raise ValueError("`weights` go with `entry_point` (a TorchScript or .pt2 file carries its own)")
        return self


class InputSpec(_Section):
    """One model input. The batch dimension is fixed (1 for the Edge TPU): int8 models need static shapes."""

    name: str = Field(description="Input name, used to key samples.")
    shape: list[PositiveInt] = Field(
        min_length=1,
        max_length=MAX_RANK,
        description=f"Static shape including batch, e.g. [1, 16, 16, 1]; at most {MAX_SAMPLE_ELEMENTS} elements.",
    )
    dtype: Literal["float32"] = Field("float32", description="Element type the float model takes.")
    layout: Layout | None = Field(None, description="Layout of a 4-D image input (NHWC or NCHW).")

    @model_validator(mode="after")
    def _static_batch_of_one(self) -> InputSpec:
        if self.shape[0] != 1:
            raise ValueError(f"the batch dimension must be 1 (static, as the Edge TPU needs), got {self.shape}")
        if self.layout is not None and len(self.shape) != len(self.layout):
            raise ValueError(f"layout {self.layout} needs a {len(self.layout)}-D shape, got {self.shape}")
        return self

    @field_validator("shape")
    @classmethod
    def _not_too_many_elements(cls, shape: list[int]) -> list[int]:
        if (elements := math.prod(shape)) > MAX_SAMPLE_ELEMENTS:
            raise ValueError(f"shape {shape} has {elements} elements, more than the {MAX_SAMPLE_ELEMENTS} allowed")
        return shape


class DataSpec(_Section):
    """A data set on disk: an .npz archive, an .npy array, or a folder of images (one subfolder per class)."""

    path: RecipePath = Field(description="File or folder, relative to the recipe.")
    format: Literal["auto", "npz", "npy", "images"] = Field(
        "auto", description="auto: by suffix (.npz, .npy) or a folder of images."
    )
    samples_key: str = Field("x", description="npz: the array of samples.")
    labels_key: str | None = Field(None, description="npz: the array of integer labels, if any.")
    labels_path: RecipePath | None = Field(None, description="npy: a separate .npy file of integer labels.")
    layout: Layout | None = Field(
        None, description="Layout the arrays are stored in, when it differs from the input's layout."
    )


class Preprocess(_Section):
    """How raw samples become model input: resize (images), then x * scale, then (x - mean) / std per channel."""

    resize: tuple[PositiveInt, PositiveInt] | None = Field(None, description="images: [height, width].")
    color: Literal["rgb", "grayscale"] = Field("rgb", description="images: decode as 3 channels or 1.")
    scale: Float32 = Field(1.0, description="Multiplier applied first, e.g. 0.00392156862745098 for 1/255.")
    mean: list[Float32] = Field(default_factory=lambda: [0.0], description="Per channel (or one for all).")
    std: list[PositiveFloat32] = Field(default_factory=lambda: [1.0], description="Per channel (or one for all).")

    @model_validator(mode="after")
    def _resized_image_fits(self) -> Preprocess:
        if self.resize is not None:
            elements = math.prod(self.resize) * (3 if self.color == "rgb" else 1)
            if elements > MAX_SAMPLE_ELEMENTS:
                raise ValueError(
                    f"resize {list(self.resize)} gives {elements} elements, more than the {MAX_SAMPLE_ELEMENTS} allowed"
                )
        return self


class Calibration(_Section):
    """Representative samples for the int8 ranges: from the training distribution, never the evaluation split."""

    data: DataSpec
    num_samples: PositiveInt = Field(200, description="How many samples to draw (seeded); all if fewer.")
    seed: Seed = Field(0, description="Seed of the sample draw.")
    preprocess: Preprocess = Field(
        default_factory=Preprocess, description="Preprocessing, used for verification data too."
    )
    method: Literal["min-max", "percentile", "mse"] = Field(
        "min-max",
        description="How each activation's int8 range is chosen from the calibration samples: min-max (the "
        "converter's), percentile (all but the outermost values), or mse (the least squared error).",
    )
    percentile: float = Field(
        99.99, gt=50, le=100, description="percentile method: the share of values (in %) kept at each end."
    )
    bias_correction: Literal["none", "empirical"] = Field(
        "none",
        description="empirical: after quantizing, move the int32 bias of every CONV_2D, DEPTHWISE_CONV_2D and "
        "FULLY_CONNECTED of the int8 model, layer by layer, so that its mean output per channel on the calibration "
        "samples is the float model's (empirical bias correction; ops, weights and scales stay as they are). Any "
        "framework; one int8 pass over the calibration samples per layer.",
    )
    weight_rounding: Literal["nearest", "gptq"] = Field(
        "nearest",
        description="How the int8 model's weights are rounded at their (unchanged) scales: nearest (the "
        "converter's), or gptq: each CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED rounded so that its output on the "
        "calibration samples moves least (GPTQ), before any bias correction. Helps most where the int8 weights "
        "dominate the error budget. Any framework; one int8 pass over the calibration samples.",
    )


class Legalize(_Section):
    """Edge TPU legalization of ONNX and torch models (Keras models need none): exact rewrites of the ONNX graph,
    before onnx2tf, of constructs that would otherwise not map to the Edge TPU (padded max-pooling, grouped and
    unequal-stride convolutions, explicit padding, hard-swish and hard-sigmoid, channel shuffles, and the [1]-shaped
    constants that make onnx2tf lose the layout). Each rewrite is checked with onnxruntime against
    the model as it came (a rewrite that changes the outputs is undone) and listed in the report's
    `legalization` section. `enabled: false` converts the model as it is; `skip` leaves out single rewrites.
    `equalize` and `bias_correction` switch on the quantization remedies, which run after the Edge TPU rewrites."""

    enabled: bool = Field(True, description="Apply the Edge TPU rewrites (ONNX and torch sources).")
    skip: list[RewriteName] = Field(
        default_factory=list, description=f"Rewrites to leave out: {', '.join(REWRITE_NAMES)}."
    )
    equalize: bool = Field(
        False,
        description="Cross-layer equalization, a quantization remedy: balance the channel ranges of each Conv -> "
        "Relu -> Conv (exact) so one wide channel no longer sets the int8 step of all (ONNX and torch sources).",
    )
    bias_correction: bool = Field(
        False,
        description="Bias correction, a quantization remedy (ONNX and torch sources; it does not apply to a Keras "
        "model, which the report then says): lower the bias of every Conv, Gemm and MatMul with constant weights by "
        "the mean output shift its int8 weights (per channel, or per tensor as quantization.granularity says) cause "
        "on the calibration samples. Not exact: the float model moves by that shift. Most useful after equalize.",
    )

    def remedies(self) -> dict[str, str]:
        """The quantization remedies these settings switch on: recipe field -> the opt-in rewrite it runs."""
        return {field: name for field, name in REMEDY_REWRITES.items() if getattr(self, field)}


class Quantization(_Section):
    """Full-integer post-training quantization: every op int8, as the Edge TPU requires."""

    mode: Literal["int8"] = Field("int8", description="Full-integer int8 (the only mode).")
    input_type: IoType = Field("int8", description="Type of the model input tensor.")
    output_type: IoType = Field("int8", description="Type of the model output tensor.")
    granularity: Literal["per-channel", "per-tensor"] = Field(
        "per-channel", description="Weight scales per output channel or one per tensor."
    )


class Latency(_Section):
    """Latency measurement: the first inference separately, then warm-up, then timed runs (batch 1)."""

    # The report keeps every timed run, so the counts are bounded like the report.
    warmup: NonNegativeInt = Field(10, le=100_000, description="Untimed runs before timing.")
    runs: PositiveInt = Field(100, le=100_000, description="Timed runs.")


TaskKind = Literal["classification", "map", "sequence", "detection", "regression", "embedding"]


class OutputTask(_Section):
    """What one model output computes, so verification judges it with the metrics of its task. Without an entry
    the kind is inferred from the output's shape (a vector: classification; steps x classes: sequence; a map with
    spatial axes: map; a single value: regression) and the report says which it chose.

    classification: top-1/top-5 agreement, accuracy with labels. map: per-pixel agreement and IoU (argmax over the
    channel axis, or `threshold` on a single-channel map). sequence: per-step agreement; with `ctc_blank`, greedy
    CTC decoding, exact match and edit distance. detection: boxes decoded by `decoder` (built-ins `anchor_free`, a
    (4+C, N) or (N, 4+C) cx,cy,w,h + class scores output; `boxes_scores`, this output's (N, 4) x1,y1,x2,y2 boxes
    with the class scores of `scores_output`; or a "package.module:function" taking one sample's outputs by name
    and returning boxes, scores and classes), int8 detections matched to float ones by IoU: recall, precision.
    regression: MAE, RMSE, maximum error and bias in `units`. embedding: cosine and nearest-neighbour agreement.
    """

    kind: TaskKind | None = Field(None, description="The task; inferred from the output's shape when absent.")
    labels: bool | None = Field(
        None, description="classification: the verification labels belong to this output (default: the first one)."
    )
    threshold: Float32 = Field(0.5, description="map: foreground above this value (single-channel maps).")
    ctc_blank: NonNegativeInt | None = Field(None, description="sequence: the CTC blank class; decodes greedily.")
    decoder: str = Field(
        "anchor_free",
        pattern=r"^(anchor_free|boxes_scores|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$",
        description="detection: anchor_free, boxes_scores, or package.module:function.",
    )
    scores_output: str | None = Field(None, description="detection, boxes_scores: the output with class scores.")
    score_threshold: float = Field(0.3, ge=0, le=1, description="detection: keep boxes scoring above this.")
    iou_threshold: float = Field(0.5, gt=0, le=1, description="detection: IoU for NMS and for matching.")
    units: str = Field("", max_length=32, description="regression: the output's physical units, for the report.")


def _device_url(url: str) -> str:
    from compiler_kit.device.address import DeviceAddress

    DeviceAddress.parse(url)  # a ValueError names the wrong part
    return url


def _expand_home(value: object) -> object:
    """`~/.ssh/id_ed25519` means the user's home, as it does to ssh."""
    return Path(value).expanduser() if isinstance(value, str | Path) else value


HomePath = Annotated[RecipePath, BeforeValidator(_expand_home)]


class Device(_Section):
    """A device the int8 model is verified on over SSH (a Coral Dev Board, a Raspberry Pi with a USB Accelerator,
    an edge box): ckit sends the model, the verification inputs and a small agent (standard library, numpy and
    tflite_runtime or ai_edge_litert on the device) and brings back the outputs and per-run latencies. The device
    joins the chain as runner `device:NAME` (its CPU) and `device:NAME:edgetpu` (the compiled model, when there is
    one and the device has libedgetpu). Keys only, host keys checked against known_hosts: a host not in it is
    refused unless `accept_new_host_key` (or `--accept-new-host-key`) says to trust it on first use."""

    url: Annotated[str, AfterValidator(_device_url)] = Field(
        description="ssh://user@host[:port]; `local` runs the agent here, with `python` as the device's Python."
    )
    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Runner name device:NAME; default the host's name."
    )
    python: str = Field(
        "python3", pattern=r"^[A-Za-z0-9_./+-]{1,255}$", description="The device's Python (a name or a path)."
    )
    identity: HomePath | None = Field(None, description="Private key file (ssh -i); default ssh's own keys.")
    known_hosts: HomePath | None = Field(None, description="known_hosts file; default ssh's own.")
    accept_new_host_key: bool = Field(False, description="Trust a host not yet in known_hosts (never a changed key).")
    connect_timeout_sec: PositiveInt = Field(10, le=600, description="Give up connecting after this long.")
    timeout_sec: PositiveInt = Field(600, le=86_400, description="Give up on one run on the device after this long.")
    edgetpu: Literal["auto", "required", "off"] = Field(
        "auto", description="Run the compiled model on the device's Edge TPU: auto | required | off."
    )
    edgetpu_device: str = Field(
        "", pattern=EDGETPU_DEVICE, description="The device's delegate device: '', ':N', 'usb[:N]', 'pci[:N]'."
    )

    @property
    def runner_name(self) -> str:
        from compiler_kit.device.address import DeviceAddress

        return f"{DEVICE_RUNNER}{self.name or DeviceAddress.parse(self.url).default_name}"


class Verify(_Section):
    """Held-out samples every runner is fed identically; labels make accuracy measurable. `task` says, per output
    name, what the output computes (see OutputTask); every output is compared by name at every step."""

    data: DataSpec
    num_samples: PositiveInt | None = Field(None, description="Seeded subset; all samples when absent.")
    seed: Seed = Field(0, description="Seed of the subset draw.")
    threads: PositiveInt = Field(1, le=1024, description="CPU threads for every runner.")
    latency: Latency = Field(default_factory=Latency)
    task: dict[str, OutputTask] = Field(
        default_factory=dict, description="Per output name: its task and the task's settings."
    )
    devices: list[Device] = Field(default_factory=list, description="Devices to verify on over SSH (see Device).")

    @field_validator("devices")
    @classmethod
    def _one_runner_per_device(cls, devices: list[Device]) -> list[Device]:
        names = [device.runner_name for device in devices]
        if twice := sorted({name for name in names if names.count(name) > 1}):
            raise ValueError(f"two devices are both {twice[0]}: give each its own `name`")
        return devices


def _output_gate_names(gates: dict[str, float]) -> dict[str, float]:
    """`min_<metric>` / `max_<metric>` of a metric some task or the generic comparison measures."""
    from compiler_kit.compare import metric_names

    known = metric_names()
    for gate in gates:
        bound, _, metric = gate.partition("_")
        if bound not in ("min", "max") or metric not in known:
            close = difflib.get_close_matches(metric, sorted(known), n=1)
            hint = f"; did you mean '{bound}_{close[0]}'?" if close else ""
            raise ValueError(f"'{gate}' is not min_<metric> or max_<metric> of a known metric{hint}")
    return gates


OutputGates = Annotated[dict[str, Float32], AfterValidator(_output_gate_names)]


class EdgeTpu(_Section):
    """The Edge TPU stage. `auto` compiles when edgetpu_compiler is found and otherwise predicts its verdict by
    static analysis (labelled "predicted"); `required` fails with exit code 4 without a compiler; `off` skips it.
    The remaining keys are the compiler's own options (edgetpu_compiler 16.0)."""

    compile: Literal["auto", "required", "off"] = Field("auto", description="auto | required | off.")

    @field_validator("compile", mode="before")
    @classmethod
    def _off_as_yaml_reads_it(cls, value: object) -> object:
        """YAML 1.1 reads a plain `off` as the boolean false; the README and `ckit init` write `compile: off`."""
        return "off" if value is False else value

    compiler: RecipePath | None = Field(
        None, description="Path of edgetpu_compiler; default $CKIT_EDGETPU_COMPILER, then PATH."
    )
    min_runtime_version: int | None = Field(None, ge=10, le=14, description="-m: oldest runtime to support.")
    num_segments: PositiveInt | None = Field(None, description="-n: split into segments for pipelining.")
    search_delegate: bool = Field(False, description="-d: search backwards for a graph that compiles.")
    delegate_search_step: PositiveInt | None = Field(None, description="-k: step of that search.")
    intermediate_tensors: list[TensorName] = Field(default_factory=list, description="-i: cut the TPU part at these.")
    # A day: a larger timeout overflows the process timeout ckit waits with.
    timeout_sec: PositiveInt = Field(
        180, le=86_400, description="-t: the compiler's timeout; ckit kills it 30 s later."
    )
    device: str = Field("", pattern=EDGETPU_DEVICE, description="Delegate device: '', ':N', 'usb[:N]', 'pci[:N]'.")


class Gates(_Section):
    """Limits a build must meet, else exit code 3. Drift gates judge source -> tflite-int8, and source -> each
    device runner (verify.devices) as `<gate>[device:NAME]`."""

    max_accuracy_drop_pp: float | None = Field(None, description="Accuracy drop in percentage points (needs labels).")
    min_top1_agreement: float | None = Field(None, ge=0, le=1, description="Share of equal top-1 predictions.")
    min_snr_db: float | None = Field(None, description="Signal-to-noise ratio of the int8 outputs, in dB.")
    min_cosine: float | None = Field(None, ge=-1, le=1, description="Mean cosine similarity of the outputs.")
    max_latency_p50_ms: dict[RunnerName, PositiveFloat] = Field(
        default_factory=dict, description="Median latency per runner, e.g. {tflite-int8: 5.0}."
    )
    min_ops_on_edgetpu_fraction: float | None = Field(
        None, ge=0, le=1, description="Share of ops mapped to the Edge TPU (compiled, or predicted)."
    )
    max_off_chip_bytes: NonNegativeInt | None = Field(
        None,
        description="Parameter bytes streamed from host memory per inference (beyond the ~7 MiB usable on-chip cache).",
    )
    max_predicted_edgetpu_ms: dict[EdgeTpuTarget, PositiveFloat] = Field(
        default_factory=dict,
        description="PREDICTED Edge TPU latency per target (cost model, no device needed), e.g. {usb: 5.0}.",
    )
    baseline: RecipePath | None = Field(
        None, description="report.json of the model in production: the relative gates below compare with it."
    )
    max_accuracy_below_baseline_pp: float | None = Field(
        None, description="int8 accuracy at most this many points below the baseline's (needs labels)."
    )
    max_latency_p50_above_baseline_pct: dict[RunnerName, float] = Field(
        default_factory=dict, description="Median latency per runner at most this % above the baseline's."
    )
    outputs: dict[str, OutputGates] = Field(
        default_factory=dict,
        description="Per output name, min_/max_ of its metrics (signal or task), e.g. {boxes: {min_recall: 0.9}}.",
    )

    @model_validator(mode="after")
    def _relative_gates_need_a_baseline(self) -> Gates:
        if (self.max_accuracy_below_baseline_pp is not None or self.max_latency_p50_above_baseline_pct) and (
            self.baseline is None
        ):
            raise ValueError("gates relative to a baseline need gates.baseline (a report.json)")
        return self


class Output(_Section):
    """Where the build writes its artifacts and reports."""

    dir: RecipePath | None = Field(None, description="Build folder; default build/<name> beside the recipe.")


class Recipe(_Section):
    """A ckit build recipe. See the module docstring of compiler_kit.recipe for the narrative."""

    # The default build folder is build/<name>: one path component that cannot climb out (no '/', no leading '.').
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=128, description="Build name (letters, digits, _.-)."
    )
    source: Source
    inputs: list[InputSpec] = Field(
        min_length=1, max_length=1, description="The model input (single-input models for now)."
    )
    calibration: Calibration
    legalize: Legalize = Field(default_factory=Legalize)
    quantization: Quantization = Field(default_factory=Quantization)
    verify: Verify
    edgetpu: EdgeTpu = Field(default_factory=EdgeTpu)
    gates: Gates = Field(default_factory=Gates)
    output: Output = Field(default_factory=Output)

    def build_dir(self, recipe_path: Path) -> Path:
        return self.output.dir or recipe_path.resolve().parent / "build" / self.name

    def sha256(self) -> str:
        """Hash of the resolved recipe (absolute paths, defaults filled in)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


def json_schema() -> dict[str, Any]:
    return Recipe.model_json_schema()


def load_recipe(path: Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read and validate a recipe; every problem becomes a `BadInputError` naming the file and line.
    `overrides`: dotted keys (`calibration.method`) set over the file's values before validation (`--set`)."""
    data, tree = _parse_yaml(_read_text(path), path)
    if not isinstance(data, dict):
        raise BadInputError(
            "a recipe must be a YAML mapping of sections (name, source, inputs, ...)",
            path=path,
            fix="start from `ckit init MODEL` or recipes/digits_keras.yaml",
        )
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    try:
        return Recipe.model_validate(data, context={"base_dir": path.resolve().parent})
    except ValidationError as exc:
        errors = exc.errors()
        lines = [_describe(error, path, tree) for error in errors[:MAX_ERRORS_SHOWN]]
        if len(errors) > MAX_ERRORS_SHOWN:
            lines.append(f"  ... and {len(errors) - MAX_ERRORS_SHOWN} more")
        raise BadInputError(
            "invalid recipe\n" + "\n".join(lines), fix="correct the keys named above; `ckit schema` lists every key"
        ) from None


def from_options(section: type[S], values: dict[str, Any], fix: str, options: dict[str, str] | None = None) -> S:
    """A section built from command-line values; a bad value is one BadInputError naming the option it came from
    (`options`: field -> option where they differ; else --field)."""
    try:
        return section.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0])  # the field, not a list item's index
        named = (options or {}).get(field, "--" + field.replace("_", "-"))
        raise BadInputError(f"{named}: {error['msg'].removeprefix('Value error, ')}", fix=fix) from None


def with_devices(recipe: Recipe, urls: list[str], accept_new_host_key: bool) -> Recipe:
    """The recipe with the command line's devices (`--device URL`) added to verify.devices, and every device
    trusting a new host key when `--accept-new-host-key` says so."""
    added = [from_options(Device, {"url": url}, DEVICE_FIX, DEVICE_OPTION) for url in urls]
    devices = [*recipe.verify.devices, *added]
    if accept_new_host_key:
        devices = [device.model_copy(update={"accept_new_host_key": True}) for device in devices]
    values = {**recipe.verify.model_dump(), "devices": devices}
    verify = from_options(Verify, values, "name each device once", DEVICE_OPTION)
    return recipe.model_copy(update={"verify": verify})


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """`data` with `key` (`section.field`) set to `value`, creating sections the file leaves out."""
    *sections, name = key.split(".")
    where: Any = data
    for depth, section in enumerate(sections):
        where = where.setdefault(section, {})
        if not isinstance(where, dict):
            raise BadInputError(
                f"--set {key}: '{'.'.join(sections[: depth + 1])}' is a value, not a section",
                fix="name a field inside a section, e.g. --set calibration.method=percentile (see `ckit schema`)",
            )
    where[name] = value


def parse_overrides(assignments: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings (VALUE read as YAML: 500, true, [1, 2], per-tensor) as {KEY: value}."""
    overrides = {}
    for assignment in assignments:
        key, equals, text = assignment.partition("=")
        if not equals or not key.strip() or any(not part for part in key.strip().split(".")):
            raise BadInputError(
                f"--set {assignment!r} is not KEY=VALUE", fix="write e.g. --set calibration.method=percentile"
            )
        try:
            overrides[key.strip()] = yaml.safe_load(text) if text.strip() else text
        except yaml.YAMLError as exc:
            raise BadInputError(
                f"--set {key}: the value is not YAML ({exc})", fix="quote it: --set 'key=\"text\"'"
            ) from None
    return overrides


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_RECIPE_BYTES + 1)  # a bounded read: the path may be a huge file or a device
    except FileNotFoundError:
        raise BadInputError("recipe file not found", path=path, fix="check the path") from None
    except OSError as exc:
        raise BadInputError(f"cannot read the recipe: {exc}", path=path, fix=_READABLE) from None
    if len(raw) > MAX_RECIPE_BYTES:
        raise BadInputError(
            f"larger than {MAX_RECIPE_BYTES} bytes: not a recipe", path=path, fix="pass the recipe's YAML file"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"cannot read the recipe: {exc}", path=path, fix="save the recipe as UTF-8") from None


_READABLE = "check the file's permissions and that it is a regular file"


def _parse_yaml(text: str, path: Path) -> tuple[Any, yaml.Node | None]:
    """The data (safe types only: no tag constructs a Python object) and the node tree that locates lines."""
    try:
        tagged = _check_structure(text, path)
        loader = yaml.SafeLoader(text)
        try:
            tree = loader.get_single_node()
            _refuse_duplicate_keys(tree, path)
            return (loader.construct_document(tree) if tree is not None else None), tree
        finally:
            loader.dispose()
    except _CONSTRUCTOR_ERRORS:
        where = f"{path}:{tagged[0][0]}" if tagged else str(path)
        value = f" ({tagged[0][1]})" if tagged else ""
        raise BadInputError(
            f"a YAML value with an explicit tag cannot be read{value}",
            path=where,
            fix="drop the tag (e.g. `!!timestamp`) or give a value of that type; very long integers cannot be read",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and start:
            problem = f"{problem} ({context} that starts at line {start.line + 1})"
        raise BadInputError(f"YAML syntax error: {problem}", path=where, fix="fix the YAML at that line") from None


def _refuse_duplicate_keys(root: yaml.Node | None, path: Path) -> None:
    """YAML lets a later key silently replace an earlier one; in a recipe that hides an edit, so both lines are
    named. Walked without recursion, each node once: aliases can make the tree a graph with cycles."""
    pending, seen = [root], set()
    while pending:
        node = pending.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            _check_keys(node, path)
            pending += [value for _, value in node.value]
        elif isinstance(node, yaml.SequenceNode):
            pending += node.value


def _check_keys(node: yaml.MappingNode, path: Path) -> None:
    first_line: dict[str, int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode):
            continue
        line = key.start_mark.line + 1
        if key.value in first_line:
            raise BadInputError(
                f"key '{key.value}' is given twice (lines {first_line[key.value]} and {line})",
                path=f"{path}:{line}",
                fix="keep one of them",
            )
        first_line[key.value] = line


# PyYAML's constructors fail with plain Python errors on a malformed tagged scalar ('!!timestamp x', '!!bool x',
# '!!float') or an integer longer than Python converts (4300 digits).
_CONSTRUCTOR_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError)


def _check_structure(text: str, path: Path) -> list[tuple[int, str]]:
    """Refuse what would crash the node builder or the validator, from the parser's events (which do not
    recurse): nesting deeper than MAX_NESTING, and escapes of unpaired UTF-16 surrogates, which no file name,
    regular expression or JSON report can hold. Returns the explicitly tagged scalars (line, `tag value`): the
    ones a constructor may fail on."""
    depth, tagged = 0, []
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_NESTING:
                where = f"{path}:{_line(event)}"
                raise BadInputError(f"nested more than {MAX_NESTING} levels deep", path=where, fix="flatten it")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.ScalarEvent):
            if event.tag and not any(event.implicit):
                tagged.append((_line(event), f"{event.tag.replace(_YAML_TAG, '!!')} {event.value}"[:80]))
            if not event.value.isascii():
                try:
                    event.value.encode("utf-8")
                except UnicodeEncodeError:
                    where = f"{path}:{_line(event)}"
                    raise BadInputError(
                        "a string holds an unpaired surrogate escape (\\uD800-\\uDFFF)", path=where, fix="remove it"
                    ) from None
    return tagged


_YAML_TAG = "tag:yaml.org,2002:"


def _line(event: yaml.Event) -> int:
    """The 1-based line an event starts on: the parser marks every event it yields."""
    assert event.start_mark is not None
    return event.start_mark.line + 1


def _describe(error: Any, path: Path, tree: yaml.Node | None) -> str:
    loc = tuple(error["loc"])
    key = ".".join(str(part) for part in loc) or "(top level)"
    key = key if len(key) <= MAX_KEY_SHOWN else key[: MAX_KEY_SHOWN - 3] + "..."  # an unknown key may be huge
    where = f"{path}:{_line_of(tree, loc)}" if tree is not None else str(path)
    if error["type"] == "extra_forbidden":
        return f"  {where}: {key}: unknown key{_suggestion(loc)}"
    return f"  {where}: {key}: {error['msg']}"


def _suggestion(loc: tuple[Any, ...]) -> str:
    section = _section_at(Recipe, loc[:-1])
    if section is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(section.model_fields), n=1)
    valid = ", ".join(section.model_fields)
    return f"; did you mean '{close[0]}'?" if close else f"; valid keys: {valid}"


def _section_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        current = _model_in(field.annotation) if field else None
    return current


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((found for arg in get_args(annotation) if (found := _model_in(arg))), None)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """Line (1-based) of the deepest YAML node along `loc` that exists."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == part), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
