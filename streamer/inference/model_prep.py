"""Turn published ONNX weights into what the model repository serves.

Rewrites, each verified by tests against the original graph:
* the input becomes uint8 NHWC BGR frames, with the float conversion, channel order, mean/std and
  layout done inside the graph: a uint8 frame is a quarter of float32's bytes on the wire;
* a batch dimension hard-coded to 1 (Reshape shapes, input/output dims) becomes dynamic, so Triton's
  dynamic batcher can put frames from several cameras into one execution. Outputs exported without a
  batch dimension (SCRFD-2.5G: `[-1, 4]`, the batch folded into the rows) get one back;
* optionally, a detector's output keeps only its first columns (YOLOX: box, objectness and the
  classes served): every frame's output crosses the server, the wire and shared memory, and
  COCO's 80 class scores are 1.2 MB per 416 x 416 frame where box + person is 85 KB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BATCH_DIM = "batch"
FRAMES_INPUT = "frames"
# Single-input ops an output may pass through after the Reshape that shapes it (SCRFD's Sigmoid).
ELEMENTWISE_OPS = frozenset({"Sigmoid", "Relu", "Identity", "Exp", "Tanh", "Cast"})
# Reductions whose `axes` attribute (opset < 18) may include the batch axis.
REDUCE_OPS = frozenset(
    {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
     "ReduceSumSquare", "ReduceLogSumExp"}
)


@dataclass(frozen=True)
class InputSpec:
    """How a model wants its pixels; the prepared graph does this itself from uint8 BGR NHWC."""

    height: int
    width: int
    channel_order: Literal["bgr", "rgb"]
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # in the model's channel order, 0..255
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: Literal["nchw", "nhwc"] = "nchw"


def _set_batch_dynamic(value_info: onnx.ValueInfoProto) -> None:
    dims = value_info.type.tensor_type.shape.dim
    if dims:
        dims[0].Clear()
        dims[0].dim_param = BATCH_DIM


def _constant_values(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    found = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    found[node.output[0]] = attr.t
    return found


def _computed_from_inputs(graph: onnx.GraphProto) -> set[str]:
    """Tensors that depend on the image input: only their Reshapes carry the batch."""
    initializers = {init.name for init in graph.initializer}
    reached = {i.name for i in graph.input if i.name not in initializers}
    for node in graph.node:  # ONNX graphs are topologically sorted
        if any(name in reached for name in node.input):
            reached.update(node.output)
    return reached


def _output_reshapes(graph: onnx.GraphProto) -> dict[str, str]:
    """Reshape node output -> graph output it reaches through element-wise ops only."""
    producers = {out: node for node in graph.node for out in node.output}
    found: dict[str, str] = {}
    for output in graph.output:
        node = producers.get(output.name)
        while node is not None and node.op_type in ELEMENTWISE_OPS:
            node = producers.get(node.input[0])
        if node is not None and node.op_type == "Reshape":
            found[node.output[0]] = output.name
    return found


def _give_outputs_a_batch(
    graph: onnx.GraphProto, constants: dict[str, onnx.TensorProto], from_inputs: set[str]
) -> None:
    """`[-1, k]` reshapes that fold the batch into an output's rows become `[0, -1, k]`."""
    reshapes = _output_reshapes(graph)
    outputs = {o.name: o for o in graph.output}
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    for node in graph.node:
        if node.op_type != "Reshape" or node.output[0] not in reshapes:
            continue
        if node.input[0] not in from_inputs or node.input[1] not in constants:
            continue
        shape = numpy_helper.to_array(constants[node.input[1]])
        if shape.ndim != 1 or len(shape) < 2 or shape[0] != -1:
            continue
        source = producers.get(node.input[0])
        if source is not None and source.op_type == "Transpose":
            # SCRFD-2.5G transposes NCHW to HWNC before flattening: bring the batch to the front.
            # With batch 1 the row order is unchanged.
            perm = list(next(a.ints for a in source.attribute if a.name == "perm"))
            if perm[0] != 0:
                if consumers.get(source.output[0], 0) != 1:
                    continue
                source.ClearField("attribute")
                source.attribute.append(
                    helper.make_attribute("perm", [0, *(p for p in perm if p != 0)])
                )
        name = f"{node.output[0]}_batched_shape"
        graph.initializer.append(
            numpy_helper.from_array(np.concatenate([[0], shape]).astype(np.int64), name)
        )
        node.input[1] = name
        output = outputs[reshapes[node.output[0]]]
        dims = output.type.tensor_type.shape.dim
        rows, trailing = f"{output.name}_rows", [int(d) for d in shape[1:]]
        del dims[:]
        for dim in (BATCH_DIM, rows, *trailing):
            entry = dims.add()
            if isinstance(dim, str):
                entry.dim_param = dim
            else:
                entry.dim_value = dim


def _reduce_per_item(graph: onnx.GraphProto, from_inputs: set[str]) -> None:
    """Reductions over axis 0 (a no-op at batch 1, e.g. TF's reduce_mean over all axes in Intel's
    ReID) would mix the images of a batch: they reduce over the other axes only."""
    for node in graph.node:
        if node.op_type not in REDUCE_OPS or node.input[0] not in from_inputs:
            continue
        attributes = {a.name: a for a in node.attribute}
        axes = attributes.get("axes")
        keepdims = attributes.get("keepdims")
        if axes is None or 0 not in axes.ints or (keepdims is not None and keepdims.i == 0):
            continue
        kept = [axis for axis in axes.ints if axis != 0]
        if not kept:
            continue
        del axes.ints[:]
        axes.ints.extend(kept)


def make_batch_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite a graph exported with batch 1 so any batch size runs."""
    graph = model.graph
    constants = _constant_values(graph)
    from_inputs = _computed_from_inputs(graph)
    _give_outputs_a_batch(graph, constants, from_inputs)
    _reduce_per_item(graph, from_inputs)
    replaced: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[1] not in constants:
            continue
        if node.input[0] not in from_inputs:  # reshaping weights: no batch there
            continue
        shape = numpy_helper.to_array(constants[node.input[1]])
        if shape.ndim != 1 or len(shape) < 2 or shape[0] != 1:
            continue
        name = replaced.get(node.input[1])
        if name is None:
            # 0 copies the input's own leading dimension: the batch follows the data.
            name = f"{node.input[1]}_dynamic_batch"
            dynamic = shape.copy()
            dynamic[0] = 0
            graph.initializer.append(numpy_helper.from_array(dynamic, name))
            replaced[node.input[1]] = name
        node.input[1] = name
    used = {name for node in graph.node for name in node.input}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:
        graph.initializer.remove(init)
    for value_info in [*graph.input, *graph.output]:
        _set_batch_dynamic(value_info)
    del graph.value_info[:]  # stale shapes with batch 1 would confuse runtimes
    return model


def prepend_uint8_preprocessing(model: onnx.ModelProto, spec: InputSpec) -> onnx.ModelProto:
    """Add an input `frames` (uint8, N x H x W x 3, BGR) feeding the original float input."""
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    raw_inputs = [i for i in graph.input if i.name not in initializers]
    if len(raw_inputs) != 1:
        raise ValueError(f"expected one image input, found {[i.name for i in raw_inputs]}")
    original = raw_inputs[0]
    prefix = "streamer_pre"
    nodes = [helper.make_node("Cast", [FRAMES_INPUT], [f"{prefix}_f32"], to=TensorProto.FLOAT)]
    current = f"{prefix}_f32"
    if spec.channel_order == "rgb":
        graph.initializer.append(
            numpy_helper.from_array(np.array([2, 1, 0], np.int64), f"{prefix}_bgr2rgb_idx")
        )
        nodes.append(
            helper.make_node("Gather", [current, f"{prefix}_bgr2rgb_idx"], [f"{prefix}_rgb"], axis=3)
        )
        current = f"{prefix}_rgb"
    if any(spec.mean) or any(s != 1.0 for s in spec.std):
        mean = np.array(spec.mean, np.float32).reshape(1, 1, 1, 3)
        inv_std = (1.0 / np.array(spec.std, np.float32)).reshape(1, 1, 1, 3)
        graph.initializer.extend(
            [
                numpy_helper.from_array(mean, f"{prefix}_mean"),
                numpy_helper.from_array(inv_std, f"{prefix}_inv_std"),
            ]
        )
        nodes.append(helper.make_node("Sub", [current, f"{prefix}_mean"], [f"{prefix}_centred"]))
        nodes.append(
            helper.make_node("Mul", [f"{prefix}_centred", f"{prefix}_inv_std"], [f"{prefix}_norm"])
        )
        current = f"{prefix}_norm"
    if spec.layout == "nchw":
        nodes.append(helper.make_node("Transpose", [current], [original.name], perm=[0, 3, 1, 2]))
    else:
        nodes.append(helper.make_node("Identity", [current], [original.name]))
    frames = helper.make_tensor_value_info(
        FRAMES_INPUT, TensorProto.UINT8, [BATCH_DIM, spec.height, spec.width, 3]
    )
    graph.input.remove(original)
    graph.input.insert(0, frames)
    for node in reversed(nodes):
        graph.node.insert(0, node)
    return model


KEEP_ALL_HINT = "prepare with `--classes 0` to keep the output whole"


def keep_leading_columns(
    model: onnx.ModelProto, columns: int, exact: bool = False
) -> onnx.ModelProto:
    """Cut the graph's single output to its first `columns` entries along the last axis.

    A no-op when the output has no more than that (ByteTrack's MOT17 detectors: one class),
    unless `exact` (the operator asked for that many): then fewer is an error.
    """
    graph = model.graph
    if len(graph.output) != 1:
        raise ValueError(
            f"expected one output, found {[o.name for o in graph.output]}; {KEEP_ALL_HINT}"
        )
    output = graph.output[0]
    dims = output.type.tensor_type.shape.dim
    if not dims or not dims[-1].HasField("dim_value"):
        raise ValueError(f"output '{output.name}' has no fixed last dimension; {KEEP_ALL_HINT}")
    if dims[-1].dim_value < columns and exact:
        raise ValueError(
            f"output '{output.name}' has {dims[-1].dim_value} columns, fewer than the "
            f"{columns} asked for"
        )
    if dims[-1].dim_value <= columns:
        return model
    prefix = "streamer_keep"
    whole = f"{output.name}_{prefix}_all_columns"
    for node in graph.node:  # the producer and any other reader now see the whole tensor
        for index, name in enumerate(node.output):
            if name == output.name:
                node.output[index] = whole
        for index, name in enumerate(node.input):
            if name == output.name:
                node.input[index] = whole
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([0], np.int64), f"{prefix}_starts"),
            numpy_helper.from_array(np.array([columns], np.int64), f"{prefix}_ends"),
            numpy_helper.from_array(np.array([len(dims) - 1], np.int64), f"{prefix}_axes"),
        ]
    )
    graph.node.append(
        helper.make_node(
            "Slice",
            [whole, f"{prefix}_starts", f"{prefix}_ends", f"{prefix}_axes"],
            [output.name],
        )
    )
    dims[-1].dim_value = columns
    return model


def prepare_model(
    source: Path,
    destination: Path,
    spec: InputSpec,
    output_columns: int | None = None,
    exact: bool = False,
) -> Path:
    """Write the servable graph: dynamic batch, uint8 frames in, and the output cut to
    `output_columns` when given. Checked with onnx.checker."""
    model = onnx.load(str(source))
    model = make_batch_dynamic(model)
    model = prepend_uint8_preprocessing(model, spec)
    if output_columns is not None:
        model = keep_leading_columns(model, output_columns, exact)
    onnx.checker.check_model(model)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(destination)
    return destination
