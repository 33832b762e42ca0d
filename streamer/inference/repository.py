"""The model repository: its shipped configs, reading it, and the embedded server's copy of it.

The package ships one `config.pbtxt` per catalogue model (`model_configs/`, package data), written
for NVIDIA's Triton container (ONNX Runtime backend). `write_shipped_configs` puts them into the
repository a config names (a writable folder the operator owns), where `streamer models prepare`
adds the weights; a config the operator edited there is never overwritten.
The embedded server only has the Python backend, so it serves a derived copy in a temporary folder:
same config (batching, instances, tensors), `backend: "python"`, and a runner that executes the very
same `model.onnx` with ONNX Runtime. Several instances of one ONNX Runtime thread each run requests
alone, without Triton's dynamic batching, which costs them speed on a CPU (see
`build_embedded_repository`); the client then keeps only as many requests at the server as it
runs, so that the fair queue orders the rest (`client.requests_worth_sending`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import onnx
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.pbtxt"
# Beside a config written from the shipped one: the digest of what was written, so that an
# unedited copy follows a newer shipped version and an edited one is left alone.
SHIPPED_RECORD = "config.pbtxt.shipped.json"


def _package_data(*parts: str) -> Traversable:
    folder = resources.files("streamer")
    for part in ("inference", *parts):
        folder = folder / part
    return folder


def runner() -> Traversable:
    """The Python-backend model file that runs `model.onnx` with ONNX Runtime."""
    return _package_data("triton_python", "model.py")


def shipped_config(name: str) -> str | None:
    """The `config.pbtxt` the package ships for catalogue model `name`; None for other models."""
    config = _package_data("model_configs", name, CONFIG_FILE)
    return config.read_text(encoding="utf-8") if config.is_file() else None


def shipped_models() -> list[str]:
    return sorted(
        item.name for item in _package_data("model_configs").iterdir()
        if (item / CONFIG_FILE).is_file()
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_shipped_config(repository: Path, name: str) -> Path | None:
    """Write the shipped `config.pbtxt` of `name` into `repository` unless the operator's own is there.

    A missing config is written; one this function wrote and nobody edited since follows the
    shipped version; any other (edited, or the operator's own) is kept. Returns the path written.
    """
    shipped = shipped_config(name)
    if shipped is None:
        return None
    target = repository / name / CONFIG_FILE
    record = repository / name / SHIPPED_RECORD
    if target.exists():
        try:
            written = json.loads(record.read_text(encoding="utf-8")).get("sha256")
            current = _digest(target.read_text(encoding="utf-8"))
        except (OSError, ValueError, AttributeError):
            return None  # no record: the operator's own file
        if current != written or current == _digest(shipped):
            return None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(shipped, encoding="utf-8")
    record.write_text(json.dumps({"sha256": _digest(shipped)}) + "\n", encoding="utf-8")
    log.info("wrote %s from the shipped config", target)
    return target


def write_shipped_configs(repository: Path, names: list[str]) -> None:
    for name in names:
        write_shipped_config(repository, name)


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


def read_model(repository: Path, name: str, shipped_fallback: bool = False) -> RepositoryModel:
    """The model's config in `repository`; with `shipped_fallback`, the shipped one where the
    repository has none yet (what `write_shipped_configs` would put there)."""
    directory = repository / name
    config_path = directory / CONFIG_FILE
    text = shipped_config(name) if shipped_fallback and not config_path.is_file() else None
    if text is None and not config_path.is_file():
        raise RepositoryError(f"{config_path}: model '{name}' has no config.pbtxt")
    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text if text is not None else config_path.read_text(encoding="utf-8"), config)
    except text_format.ParseError as exc:
        raise RepositoryError(f"{config_path}: {exc}") from None
    if config.name and config.name != name:
        raise RepositoryError(f"{config_path}: name '{config.name}' differs from folder '{name}'")
    return RepositoryModel(name=name, directory=directory, config=config)


def threads_per_instance(config: model_config_pb2.ModelConfig) -> int:
    """Share the cores between a model's instances instead of giving each all of them: one
    instance executes while another's batch is gathered and returned, and instances given every
    core each fight over the cores (`streamer bench` compares the configurations)."""
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
            # bench's ceiling grid: 2 sessions x 1 thread is best at batch 1), and while one
            # instance runs a batch of five the other may wait: requests run alone are faster
            # and cost the server less CPU (docs/performance-history.md). A single instance (the
            # small embedders) keeps its batches.
            config.ClearField("dynamic_batching")
            config.parameters["ort_one_image_per_run"].string_value = "1"
        version = destination / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        (destination / name / CONFIG_FILE).write_text(
            text_format.MessageToString(config), encoding="utf-8"
        )
        (version / MODEL_FILE).symlink_to(model.weights.resolve())
        with resources.as_file(runner()) as source:
            shutil.copyfile(source, version / "model.py")
