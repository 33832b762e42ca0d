"""Reading the model repository, and deriving the embedded server's runtime copy of it.

The committed `model_repository/` is written for NVIDIA's Triton container (ONNX Runtime backend).
The embedded server only has the Python backend, so it serves a derived copy in a temporary folder:
same config (batching, instances, tensors), `backend: "python"`, and a runner that executes the very
same `model.onnx` with ONNX Runtime. Several instances of one ONNX Runtime thread each run requests
alone, without Triton's dynamic batching, which costs them speed on a CPU (see
`build_embedded_repository`); the client then keeps only as many requests at the server as it
runs, so that the fair queue orders the rest (`client.requests_worth_sending`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

RUNNER = Path(__file__).with_name("triton_python") / "model.py"
MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.pbtxt"


class RepositoryError(Exception):
    """A model repository that cannot be served; the message names the file."""


@dataclass(frozen=True)
class RepositoryModel:
    name: str
    directory: Path
    config: model_config_pb2.ModelConfig

    @property
    def weights(self) -> Path:
        return self.directory / "1" / MODEL_FILE


def read_model(repository: Path, name: str) -> RepositoryModel:
    directory = repository / name
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise RepositoryError(f"{config_path}: model '{name}' has no config.pbtxt")
    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(config_path.read_text(encoding="utf-8"), config)
    except text_format.ParseError as exc:
        raise RepositoryError(f"{config_path}: {exc}") from None
    if config.name and config.name != name:
        raise RepositoryError(f"{config_path}: name '{config.name}' differs from folder '{name}'")
    return RepositoryModel(name=name, directory=directory, config=config)


def threads_per_instance(config: model_config_pb2.ModelConfig) -> int:
    """Share the cores between a model's instances instead of giving each all of them.

    Measured on 2 cores (`streamer bench`, 8 cameras): two instances of one thread each served
    87.6 FPS where one instance of two threads served 69.4; with two instances of two threads,
    they fight over the cores.
    """
    instances = sum(max(1, group.count) for group in config.instance_group) or 1
    return max(1, (os.cpu_count() or 1) // instances)


def check_output_dims(model: RepositoryModel) -> None:
    """Refuse a config.pbtxt whose output dims contradict the prepared file's fixed ones.

    The Python backend would serve the file's shapes anyway, and every request would then fail
    on a shared-memory region sized from the config (e.g. a detector prepared with `--classes 3`
    whose config still says 6 columns). Dims that are -1 or not fixed in the file are not compared.
    """
    try:
        graph = onnx.load(str(model.weights), load_external_data=False).graph
    except Exception as exc:  # protobuf's DecodeError and friends
        raise RepositoryError(f"{model.weights}: not a readable ONNX file ({exc})") from None
    served = {
        output.name: [d.dim_value if d.HasField("dim_value") else -1
                      for d in output.type.tensor_type.shape.dim]
        for output in graph.output
    }
    for output in model.config.output:
        dims = served.get(output.name)
        if dims is None:
            continue
        if model.config.max_batch_size > 0:
            dims = dims[1:]
        configured = list(output.dims)
        if len(dims) != len(configured):
            continue
        if any(a > 0 and b > 0 and a != b for a, b in zip(dims, configured)):
            raise RepositoryError(
                f"{model.directory / CONFIG_FILE}: output '{output.name}' dims {configured} "
                f"differ from {dims} in {model.weights}; set them in config.pbtxt (a detector "
                "prepared with --classes N has 5 + N columns)"
            )


def build_embedded_repository(
    repository: Path, models: list[str], destination: Path, ort_threads: int
) -> None:
    """Write the Python-backend copy of `models` into `destination` (weights are symlinked)."""
    for name in models:
        model = read_model(repository, name)
        if not model.weights.is_file():
            raise RepositoryError(
                f"{model.weights}: missing; run `streamer models prepare` (or `streamer models`)"
            )
        check_output_dims(model)
        config = model_config_pb2.ModelConfig()
        config.CopyFrom(model.config)
        config.name = name
        config.backend = "python"
        config.platform = ""
        config.ClearField("optimization")
        for group in config.instance_group:
            group.kind = model_config_pb2.ModelInstanceGroup.KIND_CPU
            del group.gpus[:]
        threads = ort_threads or threads_per_instance(config)
        config.parameters["ort_intra_op_threads"].string_value = str(threads)
        instances = sum(max(1, group.count) for group in config.instance_group) or 1
        if threads == 1 and instances >= 2 and config.max_batch_size > 0:
            # An instance of one ONNX Runtime thread runs a frame no faster inside a batch (the
            # ceiling grid: 2 sessions x 1 thread is best at batch 1), and while one instance
            # runs a batch of five the other may wait. Measured for the detector on 2 cores, 8
            # cameras, back to back: 112.7-118.6 FPS with each request executed alone,
            # 101.3-107.7 with Triton's dynamic batching (server CPU 12.7-13.2 ms/frame against
            # 13.9-14.7). A single instance (the small embedders) keeps its batches.
            config.ClearField("dynamic_batching")
            config.parameters["ort_one_image_per_run"].string_value = "1"
        version = destination / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        (destination / name / CONFIG_FILE).write_text(
            text_format.MessageToString(config), encoding="utf-8"
        )
        (version / MODEL_FILE).symlink_to(model.weights.resolve())
        shutil.copyfile(RUNNER, version / "model.py")
