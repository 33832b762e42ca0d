"""Turn published ONNX weights into what the model repository serves.

Two rewrites, both verified by tests against the original graph:
* the input becomes uint8 NHWC BGR frames, with the float conversion, channel order, mean/std and
  layout done inside the graph: a uint8 frame is a quarter of float32's bytes on the wire;
* a batch dimension hard-coded to 1 (Reshape shapes, input/output dims) becomes dynamic, so Triton's
  dynamic batcher can put frames from several cameras into one execution.
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


def make_batch_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite a graph exported with batch 1 so any batch size runs."""
    graph = model.graph
    constants = _constant_values(graph)
    replaced: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[1] not in constants:
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


def prepare_model(source: Path, destination: Path, spec: InputSpec) -> Path:
    """Write the servable graph: dynamic batch, uint8 frames in. Checked with onnx.checker."""
    model = onnx.load(str(source))
    model = make_batch_dynamic(model)
    model = prepend_uint8_preprocessing(model, spec)
    onnx.checker.check_model(model)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(destination)
    return destination
