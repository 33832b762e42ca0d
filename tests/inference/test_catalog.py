"""Servable files: prepared when missing or stale, an operator's own file never overwritten."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import onnx
import pytest

from streamer.inference.catalog import PROVENANCE_FILE, ensure_prepared, entry, is_stale, prepare
from streamer.inference.repository import MODEL_FILE, write_shipped_config

DETECTOR = "person_detector"


def repository_with_config(tmp_path: Path) -> Path:
    write_shipped_config(tmp_path, DETECTOR)
    return tmp_path


def test_missing_file_is_prepared_with_its_provenance(tmp_path: Path, assets: Path) -> None:
    repository = repository_with_config(tmp_path)
    ensure_prepared([DETECTOR], repository, assets)
    served = repository / DETECTOR / "1" / MODEL_FILE
    provenance = json.loads(served.with_name(PROVENANCE_FILE).read_text())
    assert served.is_file() and provenance["source"].endswith("yolox_nano.onnx")
    assert not is_stale(entry(DETECTOR), repository, assets)


def test_file_prepared_by_an_older_version_is_redone(tmp_path: Path, assets: Path) -> None:
    repository = repository_with_config(tmp_path)
    ensure_prepared([DETECTOR], repository, assets)
    record = repository / DETECTOR / "1" / PROVENANCE_FILE
    record.write_text(json.dumps({**json.loads(record.read_text()), "prepared_by": "old"}))
    assert is_stale(entry(DETECTOR), repository, assets)
    ensure_prepared([DETECTOR], repository, assets)
    assert not is_stale(entry(DETECTOR), repository, assets)


def test_operators_own_model_file_is_never_replaced(tmp_path: Path, assets: Path) -> None:
    repository = repository_with_config(tmp_path)
    served = repository / DETECTOR / "1" / MODEL_FILE
    served.parent.mkdir()
    served.write_bytes(b"production weights")
    ensure_prepared([DETECTOR], repository, assets)
    assert served.read_bytes() == b"production weights"


def test_weights_the_operator_prepared_are_kept_when_the_preparation_changes(
    tmp_path: Path, assets: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A new preparation version must not swap the operator's detector for the demo's."""
    repository = repository_with_config(tmp_path)
    own = tmp_path / "bytetrack_x_mot17.onnx"  # any weights other than the demo's
    shutil.copy(assets / "models" / "yolox_nano.onnx", own)
    prepare(entry(DETECTOR), repository, source=own)
    served = repository / DETECTOR / "1" / MODEL_FILE
    record = served.with_name(PROVENANCE_FILE)
    record.write_text(json.dumps({**json.loads(record.read_text()), "prepared_by": "old"}))
    before = served.read_bytes()
    with caplog.at_level(logging.WARNING):
        ensure_prepared([DETECTOR], repository, assets)
    assert served.read_bytes() == before
    assert json.loads(record.read_text())["source"] == str(own)
    assert f"--source {own}" in caplog.text  # says how to redo it


def test_the_detector_output_keeps_the_classes_asked_for(tmp_path: Path, assets: Path) -> None:
    repository = repository_with_config(tmp_path)
    served = repository / DETECTOR / "1" / MODEL_FILE
    prepare(entry(DETECTOR), repository, assets=assets)
    assert onnx_output_dims(served) == ["batch", 3549, 6]  # box, objectness, person
    assert json.loads(served.with_name(PROVENANCE_FILE).read_text())["classes"] == 1
    prepare(entry(DETECTOR), repository, assets=assets, classes=3)
    assert onnx_output_dims(served) == ["batch", 3549, 8]
    prepare(entry(DETECTOR), repository, assets=assets, classes=0)
    assert onnx_output_dims(served) == ["batch", 3549, 85]  # all of COCO's 80
    with pytest.raises(ValueError, match="detectors only"):
        prepare(entry("face_embedder"), repository, assets=assets, classes=1)


def onnx_output_dims(path: Path) -> list[int | str]:
    (output,) = onnx.load(str(path)).graph.output
    return [d.dim_value or d.dim_param for d in output.type.tensor_type.shape.dim]


def test_a_detector_redone_by_a_new_version_keeps_the_classes_it_was_asked_for(
    tmp_path: Path, assets: Path
) -> None:
    repository = repository_with_config(tmp_path)
    served = repository / DETECTOR / "1" / MODEL_FILE
    prepare(entry(DETECTOR), repository, assets=assets, classes=3)
    record = served.with_name(PROVENANCE_FILE)
    record.write_text(json.dumps({**json.loads(record.read_text()), "prepared_by": "old"}))
    ensure_prepared([DETECTOR], repository, assets)
    assert json.loads(record.read_text())["prepared_by"] != "old"
    assert onnx_output_dims(served) == ["batch", 3549, 8]  # as its config.pbtxt was set for


def test_more_classes_than_the_weights_have_is_refused(tmp_path: Path, assets: Path) -> None:
    repository = repository_with_config(tmp_path)
    with pytest.raises(ValueError, match="85 columns, fewer than the 86 asked for"):
        prepare(entry(DETECTOR), repository, assets=assets, classes=81)
