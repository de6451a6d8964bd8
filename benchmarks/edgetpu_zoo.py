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
from benchmarks.measure import Refused, refusing
from compiler_kit import lazy
from compiler_kit.frontends import frontend_for
from compiler_kit.quantize import Int8Quantizer
from compiler_kit.recipe import InputSpec, Quantization, Source
from compiler_kit.tflite_edit import packed

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


# SSD on MobileNet, as tensorflow/models research/object_detection builds Coral's ssd_mobilenet_v{1,2}_coco_quant
# files (samples/configs/ssd_mobilenet_v1_quantized_300x300_coco14_sync.config and
# ssd_mobilenet_v2_quantized_300x300_coco.config): 300x300, six feature maps (two from the backbone, then four extra
# layers of a 1x1 convolution to half the depth and a 3x3 stride-2 convolution to 512, 256, 256, 128), a 1x1
# convolution per map for box encodings and for class scores, the scores through a sigmoid, then the host's
# TFLite_Detection_PostProcess (export_tflite_ssd_graph's defaults: 10 detections, fast NMS).
SSD_SIZE = 300
SSD_CLASS_SLOTS = 91  # 90 COCO classes and the background
SSD_MAP_CELLS = (19, 10, 5, 3, 2, 1)  # each feature map's side at 300x300
SSD_ANCHORS_PER_CELL = (3, 6, 6, 6, 6, 6)  # 5 aspect ratios + 1 scale; 3 in the lowest layer (ssd_anchor_generator)
SSD_EXTRA_DEPTHS = (512, 256, 256, 128)


def _conv_relu6(x: Any, filters: int, kernel: int, strides: int = 1) -> Any:
    layers = lazy.keras().layers
    x = layers.Conv2D(filters, kernel, strides, "same", use_bias=False)(x)
    return layers.ReLU(6.0)(layers.BatchNormalization()(x))


def _mobilenet_v1_features(x: Any) -> list[Any]:
    """TF-slim MobileNet v1 (depth 1.0, SAME padding, ReLU6): Conv2d_11_pointwise (19x19x512 at 300) and
    Conv2d_13_pointwise (10x10x1024)."""
    layers = lazy.keras().layers
    x, maps = _conv_relu6(x, 32, 3, 2), []
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5, (1024, 2), (1024, 1)]
    for number, (filters, strides) in enumerate(blocks, start=1):
        x = layers.DepthwiseConv2D(3, strides, "same", use_bias=False)(x)
        x = _conv_relu6(layers.ReLU(6.0)(layers.BatchNormalization()(x)), filters, 1)
        if number in (11, 13):
            maps.append(x)
    return maps


def _mobilenet_v2_features(x: Any) -> list[Any]:
    """Keras's MobileNetV2 (TF-slim's layers): layer_15/expansion_output (block_13_expand_relu, 19x19x576 at 300)
    and layer_19 (the final 1x1 convolution, 10x10x1280)."""
    keras = lazy.keras()
    backbone = keras.applications.MobileNetV2(input_tensor=x, include_top=False, weights=None)
    return [backbone.get_layer("block_13_expand_relu").output, backbone.output]


def ssd_mobilenet(features: Callable[[Any], list[Any]]) -> Callable[[], Any]:
    """The SSD above on a backbone (`features`: its two feature maps); its outputs are the box encodings
    (1, 1917, 4) and the class scores after the sigmoid (1, 1917, 91), which `with_ssd_postprocess` then reads."""

    def build() -> Any:
        keras = lazy.keras()
        layers = keras.layers
        inputs = keras.Input((SSD_SIZE, SSD_SIZE, 3), batch_size=1)
        maps = features(inputs)
        for depth in SSD_EXTRA_DEPTHS:
            maps.append(_conv_relu6(_conv_relu6(maps[-1], depth // 2, 1), depth, 3, 2))
        boxes, scores = [], []
        for feature, anchors in zip(maps, SSD_ANCHORS_PER_CELL, strict=True):
            boxes.append(layers.Reshape((-1, 4))(layers.Conv2D(anchors * 4, 1)(feature)))
            scores.append(layers.Reshape((-1, SSD_CLASS_SLOTS))(layers.Conv2D(anchors * SSD_CLASS_SLOTS, 1)(feature)))
        scores = layers.Activation("sigmoid")(layers.Concatenate(axis=1)(scores))
        return keras.Model(inputs, [layers.Concatenate(axis=1)(boxes), scores])

    return build


def ssd_anchors() -> np.ndarray:
    """The 1917 anchors (y center, x center, height, width) of the six maps (19, 10, 5, 3, 2, 1 cells a side):
    scales from 0.2 to 0.95, aspect ratios 1, 2, 1/2, 3, 1/3 and one more square at the geometric mean of this
    scale and the next; the lowest map has a square of 0.1 and 2, 1/2 at 0.2."""
    scales = [0.2 + (0.95 - 0.2) * k / 5 for k in range(6)] + [1.0]
    anchors = []
    for k, cells in enumerate(SSD_MAP_CELLS):
        shapes = (
            [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
            if k == 0
            else [
                *((scales[k], ratio) for ratio in (1.0, 2.0, 0.5, 3.0, 1 / 3)),
                (math.sqrt(scales[k] * scales[k + 1]), 1.0),
            ]
        )
        for row in range(cells):
            for column in range(cells):
                for scale, ratio in shapes:
                    center = ((row + 0.5) / cells, (column + 0.5) / cells)
                    anchors.append((*center, scale / math.sqrt(ratio), scale * math.sqrt(ratio)))
    return np.array(anchors, np.float32)


def with_ssd_postprocess(model_bytes: bytes) -> bytes:
    """The int8 SSD with TFLite_Detection_PostProcess appended, as the OD API's TFLite export adds it: it reads the
    box encodings, the class scores and the anchors (a constant) and writes boxes, classes, scores and the count,
    the model's outputs. A custom op: the Edge TPU leaves it to the host."""
    from ai_edge_litert import schema_py_generated as schema
    from flatbuffers import flexbuffers

    model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    graph = model.subgraphs[0]
    encodings, scores = sorted(graph.outputs, key=lambda t: graph.tensors[t].shape[-1])  # 4 before 91 columns
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode, code.version = "TFLite_Detection_PostProcess", 1
    model.operatorCodes.append(code)

    def tensor(name: str, shape: list[int], data: bytes | None = None) -> int:
        buffer = schema.BufferT()
        buffer.data = list(data) if data else None
        model.buffers.append(buffer)
        made = schema.TensorT()
        made.name, made.shape, made.type, made.buffer = name, shape, schema.TensorType.FLOAT32, len(model.buffers) - 1
        graph.tensors.append(made)
        return len(graph.tensors) - 1

    anchors = ssd_anchors()
    detections = 10
    outputs = [tensor("detection_boxes", [1, detections, 4]), tensor("detection_classes", [1, detections]),
               tensor("detection_scores", [1, detections]), tensor("num_detections", [1])]  # fmt: skip
    op = schema.OperatorT()
    op.opcodeIndex, op.outputs = len(model.operatorCodes) - 1, outputs
    op.inputs = [encodings, scores, tensor("anchors", list(anchors.shape), anchors.tobytes())]
    op.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
    op.customOptions = list(flexbuffers.Dumps({
        "max_detections": detections, "max_classes_per_detection": 1, "detections_per_class": 100,
        "use_regular_nms": False, "nms_score_threshold": 1e-8, "nms_iou_threshold": 0.6,
        "num_classes": SSD_CLASS_SLOTS - 1, "y_scale": 10.0, "x_scale": 10.0, "h_scale": 5.0, "w_scale": 5.0,
    }))  # fmt: skip
    graph.operators.append(op)
    graph.outputs = outputs
    model.signatureDefs = []  # they name the outputs the op now consumes
    return packed(model)


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
    finish: Callable[[bytes], bytes] | None = None  # a step after quantization (an SSD's host post-processing op)

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
        # Held-out rows of Coral's models pages, added after v3 was fitted: Coral's own files at
        # google-coral/test_data@104342d (benchmarks/edgetpu_truth/pairs.json), and Inception v3 built in code
        _coral("MobileNet v1 0.25", 128, "22b67d6a63753ad9907a4c8505632479ac439b94"),  # mobilenet_v1_0.25_128_quant
        ZooModel("Inception v3", 299, _application("InceptionV3", 299)),
        _coral("DeepLab V3 0.5", 513, "c5fdea1551c6b0b799e92d72ce8a3fe46cdd5e13"),  # deeplabv3_mnv2_dm05_pascal_quant
        # deeplab_mobilenet_edgetpu_slim_cityscapes_quant
        _coral("EdgeTPU-DeepLab-slim", 513, "f3ac19c239409888c8b972c2f07942e74fdf0f24"),
        # bodypix_mobilenet_v1_075_512_512_16_quant_decoder and posenet_mobilenet_v1_075_*_16_quant_decoder: the
        # decoder is a custom op the host runs
        _coral("BodyPix 512x512", 512, "6842867f7e36b7c2503e85e884c63966fd7e06d7"),
        _coral("PoseNet 353x481", 353, "ec7c0b66309a3ecb4b32d155838f4a14b227d345"),
        _coral("PoseNet 481x641", 481, "913f9196d255a31f59701b88f1fdaf458ca07089"),
        _coral("PoseNet 721x1281", 721, "1c694fa2c72508c34cad309ca03cec4f5156ec0c"),
        # movenet_single_pose_lightning_ptq
        _coral("MoveNet Lightning", 192, "67a2124a1935f304b3b282a475b9205822dc6274"),
        # Held-out rows of the SSDs (the benchmarks page and the csv), added after v3 was fitted, built in code:
        # Coral's files are over the 4 MiB a snapshot holds
        ZooModel("SSD MobileNet v1", SSD_SIZE, ssd_mobilenet(_mobilenet_v1_features), finish=with_ssd_postprocess),
        ZooModel("SSD MobileNet v2", SSD_SIZE, ssd_mobilenet(_mobilenet_v2_features), finish=with_ssd_postprocess),
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
        raise Refused(f"{entry.name}: Coral's file {entry.path} is not cached: {edgetpu_truth.POPULATE_HINT}")
    start = time.perf_counter()
    model_bytes = quantize(entry.build(), entry.input_size)
    if entry.finish:
        model_bytes = entry.finish(model_bytes)
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
    with refusing():
        main()
