"""Servable files: prepared when missing or stale, an operator's own file never overwritten."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from streamer.core.assets import PROJECT_ROOT
from streamer.inference.catalog import PROVENANCE_FILE, ensure_prepared, entry, is_stale
from streamer.inference.repository import CONFIG_FILE, MODEL_FILE

DETECTOR = "person_detector"


def repository_with_config(tmp_path: Path) -> Path:
    (tmp_path / DETECTOR).mkdir()
    shutil.copy(PROJECT_ROOT / "model_repository" / DETECTOR / CONFIG_FILE, tmp_path / DETECTOR)
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
