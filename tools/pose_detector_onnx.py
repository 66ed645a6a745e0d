"""Make dunet/pretrained/pose_detection.onnx from MediaPipe's BlazePose person detector. Run by hand, once:

    pip download --no-deps mediapipe==0.10.14 -d /tmp/mp && unzip -o /tmp/mp/mediapipe-*.whl \
        mediapipe/modules/pose_detection/pose_detection.tflite -d /tmp/mp
    pip install tflite onnx   # readers/writers of the two formats; not needed at run time
    .venv/bin/python tools/pose_detector_onnx.py /tmp/mp/mediapipe/modules/pose_detection/pose_detection.tflite

Why a conversion: OpenCV's TFLite reader (4.14) cannot run this file. Its weights are stored sparse (DENSIFY
ops) and its feature pyramid uses DEPTH_TO_SPACE, neither of which cv2.dnn's TFLite importer knows; its ONNX
importer knows every op below. The weights are the same numbers (float16, as MediaPipe stores them), the
graph is the same graph written in ONNX's NCHW layout. The file is Apache-2.0 like its source.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper

OUT = Path(__file__).resolve().parents[1] / "dunet" / "pretrained" / "pose_detection.onnx"
OPS = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
SAME, RELU6 = 0, 3  # tflite.Padding.SAME, tflite.ActivationFunctionType.RELU6


def densify(model, tensor) -> np.ndarray:
    """A sparse constant: dense leading dimensions, the last one compressed (CSR), as in this file."""
    sparsity, shape = tensor.Sparsity(), tensor.ShapeAsNumpy()
    dims = [sparsity.DimMetadata(k) for k in range(sparsity.DimMetadataLength())]
    assert sparsity.BlockMapLength() == 0 and [d.Format() for d in dims] == [0] * (len(shape) - 1) + [1]

    def index_vector(table, kind):
        vector = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}[kind]()
        vector.Init(table.Bytes, table.Pos)
        return vector.ValuesAsNumpy().astype(np.int64)

    segments = index_vector(dims[-1].ArraySegments(), dims[-1].ArraySegmentsType())
    columns = index_vector(dims[-1].ArrayIndices(), dims[-1].ArrayIndicesType())
    values = constant_bytes(model, tensor, np.float16)
    dense = np.zeros((int(np.prod(shape[:-1])), shape[-1]), np.float16)
    for row in range(dense.shape[0]):
        span = slice(segments[row], segments[row + 1])
        dense[row, columns[span]] = values[span]
    return dense.reshape(shape)


def constant_bytes(model, tensor, dtype) -> np.ndarray:
    return np.frombuffer(model.Buffers(tensor.Buffer()).DataAsNumpy().tobytes(), dtype)


def options(op, kind):
    table = kind()
    raw = op.BuiltinOptions()
    table.Init(raw.Bytes, raw.Pos)
    return table


def convert(tflite_path: Path) -> onnx.ModelProto:
    raw = tflite_path.read_bytes()
    model = tflite.Model.GetRootAsModel(raw, 0)
    graph = model.Subgraphs(0)
    dtypes = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64}
    consts: dict[int, np.ndarray] = {}  # tensor index -> value (NHWC / TFLite layout)
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        if tensor.Sparsity() is not None:
            consts[i] = densify(model, tensor)
        elif model.Buffers(tensor.Buffer()).DataLength():
            consts[i] = constant_bytes(model, tensor, dtypes[tensor.Type()]).reshape(tensor.ShapeAsNumpy())

    nodes, inits = [], []
    name = lambda i: f"t{i}"  # noqa: E731

    def init(label: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, label))
        return label

    def activation(out: str, fused: int) -> None:
        if fused == RELU6:
            nodes[-1].output[0] = out + "_pre"
            nodes.append(helper.make_node("Clip", [out + "_pre", init(out + "_lo", np.float32(0)),
                                                   init(out + "_hi", np.float32(6))], [out]))
        else:
            assert fused == 0, fused

    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = OPS[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ins = [op.Inputs(j) for j in range(op.InputsLength())]
        out_index = op.Outputs(0)
        out = name(out_index)
        if kind in ("DENSIFY", "DEQUANTIZE"):  # weights: fold to float32 constants
            consts[out_index] = consts[ins[0]].astype(np.float32)
        elif kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            weight, bias = consts[ins[1]].astype(np.float32), consts[ins[2]].astype(np.float32)
            depthwise = kind == "DEPTHWISE_CONV_2D"
            opts = options(op, tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions)
            # TFLite: conv (O, H, W, I), depthwise (1, H, W, C); ONNX: (O, I/groups, H, W).
            weight = weight.transpose(3, 0, 1, 2) if depthwise else weight.transpose(0, 3, 1, 2)
            kh, kw = weight.shape[2:]
            # SAME with stride 1 and an odd kernel pads k // 2 on each side; the strided convs are VALID
            # (an explicit PAD op precedes them).
            assert opts.Padding() != SAME or opts.StrideW() == 1
            pads = [kh // 2, kw // 2, kh // 2, kw // 2] if opts.Padding() == SAME else [0, 0, 0, 0]
            # Weights stay float16 in the file (half its size) and become float32 when the net is loaded.
            nodes.append(helper.make_node("Cast", [init(out + "_w16", weight.astype(np.float16))], [out + "_w"],
                                          to=TensorProto.FLOAT))
            nodes.append(helper.make_node(
                "Conv", [name(ins[0]), out + "_w", init(out + "_b", bias)], [out],
                kernel_shape=[kh, kw], strides=[opts.StrideH(), opts.StrideW()], pads=pads,
                group=weight.shape[0] if depthwise else 1))
            activation(out, opts.FusedActivationFunction())
        elif kind == "ADD":
            nodes.append(helper.make_node("Add", [name(ins[0]), name(ins[1])], [out]))
            activation(out, options(op, tflite.AddOptions).FusedActivationFunction())
        elif kind == "PAD":
            (_, _), (top, bottom), (left, right), (_, _) = consts[ins[1]].tolist()
            nodes.append(helper.make_node("Pad", [name(ins[0]), init(out + "_p", np.array(
                [0, 0, top, left, 0, 0, bottom, right], np.int64))], [out]))
        elif kind == "DEPTH_TO_SPACE":  # TensorFlow's channel order is ONNX's DCR mode
            nodes.append(helper.make_node("DepthToSpace", [name(ins[0])], [out], mode="DCR",
                                          blocksize=options(op, tflite.DepthToSpaceOptions).BlockSize()))
        elif kind == "RESIZE_BILINEAR":
            opts = options(op, tflite.ResizeBilinearOptions)
            assert opts.HalfPixelCenters() and not opts.AlignCorners()
            nodes.append(helper.make_node(
                "Resize", [name(ins[0]), "", init(out + "_s", np.array([1, 1, 2, 2], np.float32))], [out],
                mode="linear", coordinate_transformation_mode="half_pixel"))
        elif kind == "RESHAPE":  # head outputs: NCHW back to NHWC, then (1, anchors, values)
            nodes.append(helper.make_node("Transpose", [name(ins[0])], [out + "_nhwc"], perm=[0, 2, 3, 1]))
            nodes.append(helper.make_node("Reshape", [out + "_nhwc", init(out + "_shape", np.array(
                graph.Tensors(out_index).ShapeAsNumpy(), np.int64))], [out]))
        elif kind == "CONCATENATION":
            nodes.append(helper.make_node("Concat", [name(i) for i in ins], [out],
                                          axis=options(op, tflite.ConcatenationOptions).Axis()))
        else:
            raise SystemExit(f"operator {kind} is not converted")

    image = graph.Tensors(graph.Inputs(0))
    _, height, width, channels = image.ShapeAsNumpy().tolist()
    nodes.insert(0, helper.make_node("Identity", ["image"], [name(graph.Inputs(0))]))
    outputs = {"Identity": "boxes", "Identity_1": "scores"}  # (1, 2254, 12) and (1, 2254, 1)
    for j in range(graph.OutputsLength()):
        tensor = graph.Tensors(graph.Outputs(j))
        nodes.append(helper.make_node("Identity", [name(graph.Outputs(j))], [outputs[tensor.Name().decode()]]))
    onnx_graph = helper.make_graph(
        nodes, "mediapipe_pose_detection",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, channels, height, width])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 2254, 12]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2254, 1])], inits)
    result = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", 13)],
                               producer_name="dunet tools/pose_detector_onnx.py")
    result.doc_string = ("MediaPipe BlazePose person detector (pose_detection.tflite of the mediapipe 0.10.14 wheel, "
                         "Apache License 2.0), converted to ONNX by dunet")
    onnx.checker.check_model(result, full_check=True)  # types too: onnxruntime runs the file as well
    return result


if __name__ == "__main__":
    onnx.save(convert(Path(sys.argv[1])), OUT)
    print(f"{OUT}: {OUT.stat().st_size / 1e6:.2f} MB")
