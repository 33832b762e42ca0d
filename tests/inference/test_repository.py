"""The embedded server's copy of the model repository: Python backend, cores shared by instances."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from streamer.core.assets import PROJECT_ROOT
from streamer.inference.catalog import entry, prepare
from streamer.inference.repository import (
    CONFIG_FILE,
    MODEL_FILE,
    RepositoryError,
    build_embedded_repository,
)

DETECTOR = "person_detector"


def detector_repository(tmp_path: Path, assets: Path, classes: int | None = None) -> Path:
    source = tmp_path / "repository"
    (source / DETECTOR).mkdir(parents=True, exist_ok=True)
    (source / DETECTOR / CONFIG_FILE).write_bytes(
        (PROJECT_ROOT / "model_repository" / DETECTOR / CONFIG_FILE).read_bytes()
    )
    prepare(entry(DETECTOR), source, assets=assets, classes=classes)
    return source


def embedded_config(tmp_path: Path, assets: Path, ort_threads: int) -> model_config_pb2.ModelConfig:
    source = detector_repository(tmp_path, assets)
    served = tmp_path / f"served-{ort_threads}"
    build_embedded_repository(source, [DETECTOR], served, ort_threads)
    config = model_config_pb2.ModelConfig()
    text_format.Parse((served / DETECTOR / CONFIG_FILE).read_text(), config)
    weights = source / DETECTOR / "1" / MODEL_FILE
    assert (served / DETECTOR / "1" / MODEL_FILE).read_bytes() == weights.read_bytes()
    return config


def test_one_thread_instances_run_each_request_alone(tmp_path: Path, assets: Path) -> None:
    """On a CPU, a one-thread session is no faster per frame in a batch; requests still may
    carry several frames (`inference.max_request_batch`)."""
    config = embedded_config(tmp_path, assets, ort_threads=1)
    assert config.backend == "python"
    assert config.parameters["ort_intra_op_threads"].string_value == "1"
    assert not config.HasField("dynamic_batching")
    assert config.max_batch_size == 16
    # a request's several frames run one after another, each at batch 1
    assert config.parameters["ort_one_image_per_run"].string_value == "1"


def test_instances_of_several_threads_keep_the_committed_dynamic_batching(
    tmp_path: Path, assets: Path
) -> None:
    config = embedded_config(tmp_path, assets, ort_threads=4)
    assert config.parameters["ort_intra_op_threads"].string_value == "4"
    assert config.HasField("dynamic_batching")
    assert "ort_one_image_per_run" not in config.parameters


def test_output_dims_the_prepared_file_contradicts_are_refused_before_serving(
    tmp_path: Path, assets: Path
) -> None:
    """Prepared with --classes 3 (8 columns) while config.pbtxt still says 6: every request
    would fail later; the server refuses to start, naming the file and both shapes."""
    source = detector_repository(tmp_path, assets, classes=3)
    with pytest.raises(RepositoryError, match=r"output 'output' dims \[3549, 6\] differ from "
                       r"\[3549, 8\].*--classes N has 5 \+ N columns"):
        build_embedded_repository(source, [DETECTOR], tmp_path / "served", 1)
    (source / DETECTOR / "1" / MODEL_FILE).write_bytes(b"not onnx")
    with pytest.raises(RepositoryError, match="not a readable ONNX file"):
        build_embedded_repository(source, [DETECTOR], tmp_path / "served-again", 1)
