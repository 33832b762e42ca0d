"""The model repository: shipped configs written where missing and never over an edit; the
embedded server's copy of it (Python backend, cores shared by instances)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from streamer.inference.catalog import entry, prepare
from streamer.inference.repository import (
    CONFIG_FILE,
    MODEL_FILE,
    SHIPPED_RECORD,
    RepositoryError,
    build_embedded_repository,
    read_model,
    shipped_config,
    shipped_models,
    write_shipped_config,
)

DETECTOR = "person_detector"


def detector_repository(tmp_path: Path, assets: Path, classes: int | None = None) -> Path:
    source = tmp_path / "repository"
    prepare(entry(DETECTOR), source, assets=assets, classes=classes)  # writes the shipped config
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


def test_shipped_configs_are_written_where_missing_and_an_edited_one_is_kept(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    shipped = shipped_config(DETECTOR)
    assert shipped is not None and DETECTOR in shipped_models()

    written = write_shipped_config(repository, DETECTOR)
    target = repository / DETECTOR / CONFIG_FILE
    assert written == target and target.read_text() == shipped

    edited = shipped.replace("max_batch_size", "# tuned for our GPU\nmax_batch_size")
    target.write_text(edited)
    assert write_shipped_config(repository, DETECTOR) is None
    assert target.read_text() == edited, "the operator's edit survives"


def test_an_unedited_copy_follows_a_newer_shipped_config(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    write_shipped_config(repository, DETECTOR)
    target = repository / DETECTOR / CONFIG_FILE
    older = "# what an older version shipped\n" + target.read_text()
    target.write_text(older)
    (repository / DETECTOR / SHIPPED_RECORD).write_text(
        json.dumps({"sha256": hashlib.sha256(older.encode()).hexdigest()})
    )

    assert write_shipped_config(repository, DETECTOR) == target
    assert target.read_text() == shipped_config(DETECTOR)


def test_an_operators_own_config_is_never_replaced(tmp_path: Path) -> None:
    own = tmp_path / DETECTOR / CONFIG_FILE
    own.parent.mkdir()
    own.write_text('name: "person_detector"\nbackend: "onnxruntime"\nmax_batch_size: 32\n')
    assert write_shipped_config(tmp_path, DETECTOR) is None
    assert "max_batch_size: 32" in own.read_text()
    assert write_shipped_config(tmp_path, "operators_own_model") is None, "nothing shipped for it"


def test_check_reads_the_shipped_config_where_the_repository_has_none(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match=r"has no config\.pbtxt"):
        read_model(tmp_path, DETECTOR)
    model = read_model(tmp_path, DETECTOR, shipped_fallback=True)
    assert model.config.name == DETECTOR and model.config.max_batch_size > 0
    assert not (tmp_path / DETECTOR).exists(), "reading writes nothing"
