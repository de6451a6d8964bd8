"""The architectures of Coral's published Edge TPU benchmarks, built in code and quantized to full-integer int8.

Usage: python -m benchmarks.edgetpu_zoo [--only "MobileNet v1,Inception v4"]

Each model is built at Coral's input size with random weights (weights do not change Edge TPU timing, and nothing
is downloaded), with its classifier head (1000 or 1001 classes, softmax), then goes through ckit's own path: saved
as .keras, exported by the Keras frontend, quantized by Int8Quantizer on a few random calibration images. The
.tflite files are cached in benchmarks/results/edgetpu_zoo/ and rebuilt only when missing. benchmarks/edgetpu_fit.py
fits the latency model on them.
"""

from __future__ import annotations

import argparse
import math
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from benchmarks import edgetpu_truth
from compiler_kit import lazy
from compiler_kit.frontends import frontend_for
from compiler_kit.quantize import Int8Quantizer
from compiler_kit.recipe import InputSpec, Quantization, Source

ZOO_DIR = Path(__file__).resolve().parent / "results" / "edgetpu_zoo"
CALIBRATION_SAMPLES = 4  # ranges from random images: enough for a model that is only timed, never scored


class Conv(NamedTuple):
    """Convolution + batch norm + ReLU (the converter folds the norm into the convolution)."""

    filters: int
    kernel: tuple[int, int]
    strides: int = 1
    padding: str = "same"


class Pool(NamedTuple):
    kind: str  # "max" or "avg"
    size: int = 3
    strides: int = 1
    padding: str = "same"


# An Inception network is a sequence of steps; a list of branches is one step that runs each branch (a tuple of
# steps) on the same input and concatenates their outputs, so branches can split again (Inception v4's C block).
Step = Conv | Pool | list


def _apply(x: Any, step: Step) -> Any:
    layers = lazy.keras().layers
    if isinstance(step, list):
        return layers.Concatenate()([_sequence(x, branch) for branch in step])
    if isinstance(step, Pool):
        pool = layers.MaxPooling2D if step.kind == "max" else layers.AveragePooling2D
        return pool(step.size, step.strides, step.padding)(x)
    x = layers.Conv2D(step.filters, step.kernel, step.strides, step.padding, use_bias=False)(x)
    return layers.ReLU()(layers.BatchNormalization()(x))


def _sequence(x: Any, steps: tuple[Step, ...] | list[Step]) -> Any:
    for step in steps:
        x = _apply(x, step)
    return x


def _square(filters: int, size: int, strides: int = 1, padding: str = "same") -> Conv:
    return Conv(filters, (size, size), strides, padding)


def _inception_network(size: int, steps: list[Step], classes: int = 1001) -> Any:
    """Steps, then average pooling over the whole map and a softmax classifier (dropout is inert at inference)."""
    keras = lazy.keras()
    inputs = keras.Input((size, size, 3), batch_size=1)
    features = keras.layers.GlobalAveragePooling2D()(_sequence(inputs, steps))
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(features))


REDUCE = Pool("max", 3, 2, "valid")  # the stride-2 max pool both Inception networks use between stages


def inception_v4() -> Any:
    """Inception v4 (Szegedy et al. 2016, figures 3-9), 299x299, 1001 classes as in TF-slim."""
    block_a = [(_square(96, 1),), (_square(64, 1), _square(96, 3)), (_square(64, 1), _square(96, 3), _square(96, 3)),
               (Pool("avg"), _square(96, 1))]  # fmt: skip
    block_b = [(_square(384, 1),), (_square(192, 1), Conv(224, (1, 7)), Conv(256, (7, 1))),
               (_square(192, 1), Conv(192, (7, 1)), Conv(224, (1, 7)), Conv(224, (7, 1)), Conv(256, (1, 7))),
               (Pool("avg"), _square(128, 1))]  # fmt: skip
    split_c = [(Conv(256, (1, 3)),), (Conv(256, (3, 1)),)]
    block_c = [(_square(256, 1),), (_square(384, 1), split_c),
               (_square(384, 1), Conv(448, (3, 1)), Conv(512, (1, 3)), split_c),
               (Pool("avg"), _square(256, 1))]  # fmt: skip
    stem = [_square(32, 3, 2, "valid"), _square(32, 3, 1, "valid"), _square(64, 3),
            [(REDUCE,), (_square(96, 3, 2, "valid"),)],
            [(_square(64, 1), _square(96, 3, 1, "valid")),
             (_square(64, 1), Conv(64, (7, 1)), Conv(64, (1, 7)), _square(96, 3, 1, "valid"))],
            [(_square(192, 3, 2, "valid"),), (REDUCE,)]]  # fmt: skip
    reduction_a = [(_square(384, 3, 2, "valid"),), (_square(192, 1), _square(224, 3), _square(256, 3, 2, "valid")),
                   (REDUCE,)]  # fmt: skip
    reduction_b = [(_square(192, 1), _square(192, 3, 2, "valid")),
                   (_square(256, 1), Conv(256, (1, 7)), Conv(320, (7, 1)), _square(320, 3, 2, "valid")),
                   (REDUCE,)]  # fmt: skip
    steps = [*stem, *[block_a] * 4, reduction_a, *[block_b] * 7, reduction_b, *[block_c] * 3]
    return _inception_network(299, steps)


def inception_v1() -> Any:
    """Inception v1 (GoogLeNet, Szegedy et al. 2014) as TF-slim builds it: batch norm, and a 3x3 convolution in the
    branch the paper gives a 5x5. 224x224, 1001 classes."""

    def module(b0: int, b1: tuple[int, int], b2: tuple[int, int], b3: int) -> list:
        return [(_square(b0, 1),), (_square(b1[0], 1), _square(b1[1], 3)), (_square(b2[0], 1), _square(b2[1], 3)),
                (Pool("max"), _square(b3, 1))]  # fmt: skip

    pool = Pool("max", 3, 2)
    steps = [_square(64, 7, 2), pool, _square(64, 1), _square(192, 3), pool,
             module(64, (96, 128), (16, 32), 32), module(128, (128, 192), (32, 96), 64), pool,
             module(192, (96, 208), (16, 48), 64), module(160, (112, 224), (24, 64), 64),
             module(128, (128, 256), (24, 64), 64), module(112, (144, 288), (32, 64), 64),
             module(256, (160, 320), (32, 128), 128), Pool("max", 2, 2),
             module(256, (160, 320), (32, 128), 128), module(384, (192, 384), (48, 128), 128)]  # fmt: skip
    return _inception_network(224, steps)


class MBConv(NamedTuple):
    """One stage of EfficientNet-EdgeTpu, as a block string of tensorflow/tpu's BlockDecoder reads it
    (`r2_k3_s22_e8_i24_o32_c1`): repeats, kernel, stride, expansion, input and output filters, fused, skip."""

    repeats: int
    kernel: int
    strides: int
    expand: int
    filters_in: int
    filters_out: int
    fused: bool  # c1: the 1x1 expansion and the depthwise convolution are one kxk convolution
    skip: bool = True


def _mbconv(x: Any, block: MBConv, filters_in: int, strides: int) -> Any:
    """tensorflow/tpu models/official/efficientnet/efficientnet_model.py: MBConvBlock (1x1 expansion, depthwise kxk
    with the stride, 1x1 projection) or MBConvBlockWithoutDepthwise (kxk expansion, 1x1 projection with the stride);
    batch norm after each convolution, ReLU after all but the projection, no squeeze-and-excite; the identity is
    added when the stride is 1 and the filters do not change."""
    layers = lazy.keras().layers
    inputs, expanded = x, filters_in * block.expand

    def conv(y: Any, filters: int, kernel: int, stride: int, relu: bool) -> Any:
        y = layers.BatchNormalization()(layers.Conv2D(filters, kernel, stride, "same", use_bias=False)(y))
        return layers.ReLU()(y) if relu else y

    if block.fused:
        x = conv(x, expanded, block.kernel, 1, True) if block.expand != 1 else x
        x = conv(x, block.filters_out, 1, strides, False)
    else:
        x = conv(x, expanded, 1, 1, True) if block.expand != 1 else x
        x = layers.DepthwiseConv2D(block.kernel, strides, "same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        x = conv(x, block.filters_out, 1, 1, False)
    if block.skip and strides == 1 and filters_in == block.filters_out:
        x = layers.Add()([x, inputs])
    return x


# tensorflow/tpu@132e77d models/official/efficientnet/edgetpu/efficientnet_edgetpu_builder.py: blocks_args
EFFICIENTNET_EDGETPU_BLOCKS = (
    MBConv(1, 3, 1, 4, 24, 24, fused=True, skip=False),  # r1_k3_s11_e4_i24_o24_c1_noskip
    MBConv(2, 3, 2, 8, 24, 32, fused=True),  # r2_k3_s22_e8_i24_o32_c1
    MBConv(4, 3, 2, 8, 32, 48, fused=True),  # r4_k3_s22_e8_i32_o48_c1
    MBConv(5, 5, 2, 8, 48, 96, fused=False),  # r5_k5_s22_e8_i48_o96
    MBConv(4, 5, 1, 8, 96, 144, fused=False),  # r4_k5_s11_e8_i96_o144
    MBConv(2, 5, 2, 8, 144, 192, fused=False),  # r2_k5_s22_e8_i144_o192
)


def efficientnet_edgetpu(depth_coefficient: float, size: int) -> Callable[[], Any]:
    """EfficientNet-EdgeTpu (tensorflow/tpu, efficientnet_edgetpu_builder.py: S = (width 1.0, depth 1.0, 224),
    M = (1.0, 1.1, 240); L's width 1.2 is not needed here): a 3x3 stride-2 stem of 32 filters, the blocks above with
    their repeats scaled by ceil(depth x repeats) (efficientnet_builder.round_repeats), a 1x1 head of 1280 filters,
    average pooling and a 1001-class softmax (num_classes=1001). Width 1.0 leaves every filter count as written."""

    def build() -> Any:
        keras = lazy.keras()
        layers = keras.layers
        inputs = keras.Input((size, size, 3), batch_size=1)
        x = layers.Conv2D(32, 3, 2, "same", use_bias=False)(inputs)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        filters = 32
        for block in EFFICIENTNET_EDGETPU_BLOCKS:
            for repeat in range(math.ceil(depth_coefficient * block.repeats)):
                x = _mbconv(x, block, filters, block.strides if repeat == 0 else 1)
                filters = block.filters_out
        x = layers.Conv2D(1280, 1, 1, "same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        features = layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, layers.Dense(1001, activation="softmax")(features))

    return build


def _application(name: str, size: int, **options: Any) -> Callable[[], Any]:
    """A keras.applications classifier at `size`, random weights, 1000 classes and softmax (its defaults)."""

    def build() -> Any:
        return getattr(lazy.keras().applications, name)(input_shape=(size, size, 3), weights=None, **options)

    return build


@dataclass(frozen=True)
class ZooModel:
    name: str  # as in Coral's table and benchmarks/edgetpu_reference.json
    input_size: int
    build: Callable[[], Any] | None  # None: Coral's own int8 file, read from the edgetpu_truth cache by its blob id
    blob: str = ""  # git blob id of Coral's file (benchmarks/edgetpu_truth/pairs.json cites its repository and commit)

    @property
    def path(self) -> Path:
        if self.blob:
            return edgetpu_truth.cached(self.blob)
        return ZOO_DIR / f"{re.sub(r'[^a-z0-9]+', '_', self.name.lower())}_{self.input_size}_int8.tflite"


def _coral(name: str, input_size: int, blob: str) -> ZooModel:
    """Coral's own int8 model, the very architecture (and weights) of a published row: preferred to a build in code
    whenever the file is in the edgetpu_truth cache (`python -m benchmarks.edgetpu_truth populate`)."""
    return ZooModel(name, input_size, None, blob)


ZOO = {
    model.name: model
    for model in (
        ZooModel("MobileNet v1", 224, _application("MobileNet", 224, alpha=1.0)),
        # google-coral/test_data@086adea mobilenet_v2_1.0_224_quant.tflite, the model Coral's benchmarks time
        _coral("MobileNet v2", 224, "c31ccd43b2c2e3258093208cbeeb6046aa7ab2ba"),
        ZooModel("Inception v4", 299, inception_v4),
        ZooModel("ResNet-50 V1", 299, _application("ResNet50", 299)),
        ZooModel("Inception v1", 224, inception_v1),
        ZooModel("Inception-ResNet V2", 299, _application("InceptionResNetV2", 299)),
        ZooModel("ResNet-50 V2", 299, _application("ResNet50V2", 299)),
        ZooModel("ResNet-152 V2", 299, _application("ResNet152V2", 299)),
        ZooModel("VGG16", 224, _application("VGG16", 224)),
        ZooModel("VGG19", 224, _application("VGG19", 224)),
        # Coral's table says "DenseNet (224x224)" without a depth; DenseNet-121, the smallest of Keras's, is assumed
        ZooModel("DenseNet", 224, _application("DenseNet121", 224)),
        # google-coral/test_data@104342d deeplabv3_mnv2_pascal_quant.tflite: DeepLab V3 on MobileNet v2, 513x513
        _coral("DeepLab V3", 513, "cfb544901b574fc95309f4d3cd33b81934642f1c"),
        # Held-out rows chosen before v3 of the cost model (benchmarks/edgetpu_reference.json, "fit": false)
        ZooModel("EfficientNet-EdgeTpu-S", 224, efficientnet_edgetpu(1.0, 224)),
        ZooModel("EfficientNet-EdgeTpu-M", 240, efficientnet_edgetpu(1.1, 240)),
    )
}


def quantize(model: Any, input_size: int) -> bytes:
    """The Keras model -> full-integer int8 .tflite bytes, through ckit's Keras frontend and quantizer."""
    spec = InputSpec(name="image", shape=[1, input_size, input_size, 3], layout="NHWC")
    rng = np.random.default_rng(0)
    calibration = [rng.uniform(-1, 1, spec.shape).astype(np.float32) for _ in range(CALIBRATION_SAMPLES)]
    with tempfile.TemporaryDirectory() as folder:
        keras_path = Path(folder) / "model.keras"
        model.save(keras_path)
        float_model = frontend_for("keras").convert(Source(framework="keras", path=keras_path), [spec], Path(folder))
        return Int8Quantizer(Quantization()).int8_tflite(float_model, calibration)


def build(entry: ZooModel) -> float:
    """Build and cache one model unless its .tflite exists; the seconds it took (0 when cached)."""
    if entry.path.exists():
        return 0.0
    if entry.build is None:
        raise SystemExit(f"{entry.name}: Coral's file {entry.path} is not cached: {edgetpu_truth.POPULATE_HINT}")
    start = time.perf_counter()
    model_bytes = quantize(entry.build(), entry.input_size)
    entry.path.parent.mkdir(parents=True, exist_ok=True)
    partial = entry.path.with_suffix(".partial")  # an interrupted build must not leave a file that looks cached
    partial.write_bytes(model_bytes)
    partial.replace(entry.path)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated model names (default: all)")
    names = [name.strip() for name in parser.parse_args().only.split(",") if name.strip()] or list(ZOO)
    if unknown := [name for name in names if name not in ZOO]:
        parser.error(f"unknown model {', '.join(unknown)}; the zoo has {', '.join(ZOO)}")
    lazy.keras().utils.set_random_seed(0)  # the same weights on every machine: a rebuilt file is the same file
    total = time.perf_counter()
    for name in names:
        seconds = build(ZOO[name])
        print(f"{name:22} {'cached' if not seconds else f'built in {seconds:.0f} s'}  {ZOO[name].path.name}")
    print(f"zoo ready in {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
