"""One rule for paths: every relative path in a config file, written or default, is relative to
that file's folder, wherever the service is started from."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from streamer.config import load_config, parse_config
from streamer.core.assets import ASSETS_ENV_VAR
from streamer.identities.enrolment import store_path
from streamer.inference.triton import resolve_repository

CAMERA = "cameras:\n  - name: door\n    url: ../footage/door.mp4\n"


def path_settings(section: BaseModel, prefix: str = "") -> dict[str, Path]:
    """Every `Path` value in the config tree, by key."""
    found: dict[str, Path] = {}
    for name in type(section).model_fields:
        value = getattr(section, name)
        key = f"{prefix}{name}"
        if isinstance(value, Path):
            found[key] = value
        elif isinstance(value, BaseModel):
            found |= path_settings(value, f"{key}.")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    found |= path_settings(item, f"{key}[{index}].")
    return found


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An operator's folder holding the config; the service is started from somewhere else."""
    folder = tmp_path / "site" / "conf"
    folder.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv(ASSETS_ENV_VAR, raising=False)
    return folder


def test_written_paths_are_relative_to_the_config_file_not_the_working_directory(site: Path) -> None:
    config_file = site / "streamer.yaml"
    config_file.write_text(
        "assets_dir: ../assets\n"
        "triton:\n  model_repository: models\n"
        "identities:\n  faces_store: private/faces.npz\n"
        "snapshots:\n  directory: pictures\n"
        "publishing:\n"
        "  jsonl:\n    path: out/frames.jsonl\n"
        "  mqtt:\n    tls: {ca_file: tls/ca.pem, cert_file: tls/me.pem, key_file: tls/me.key}\n"
        "    delivery: {spill_dir: spill/mqtt}\n"
        "  redis:\n    delivery: {spill_dir: spill/redis}\n"
        + CAMERA
    )
    config = load_config(config_file)

    assert config.assets_dir == site.parent / "assets"
    assert config.triton.model_repository == site / "models"
    assert config.identities.faces_store == site / "private" / "faces.npz"
    assert config.snapshots.directory == site / "pictures"
    assert config.publishing.jsonl.path == str(site / "out" / "frames.jsonl")
    tls = config.publishing.mqtt.tls
    assert (tls.ca_file, tls.cert_file, tls.key_file) == (
        site / "tls" / "ca.pem", site / "tls" / "me.pem", site / "tls" / "me.key"
    )
    assert config.publishing.mqtt.delivery.spill_dir == site / "spill" / "mqtt"
    assert config.publishing.redis.delivery.spill_dir == site / "spill" / "redis"
    assert config.cameras[0].url == str(site.parent / "footage" / "door.mp4")


def test_default_paths_land_beside_the_config_file(site: Path) -> None:
    config_file = site / "streamer.yaml"
    config_file.write_text(CAMERA)
    config = load_config(config_file)

    assert config.triton.model_repository == site / "model_repository"
    assert config.identities.faces_store == site / "data" / "faces.npz"
    assert config.snapshots.directory == site / "snapshots"
    assert config.publishing.jsonl.path == "-", "standard output stays standard output"
    assert config.publishing.mqtt.delivery.spill_dir is None, "no spill file unless asked for"


def test_no_path_setting_is_left_relative(site: Path) -> None:
    """A path setting added later obeys the rule without being named in the loader."""
    config_file = site / "streamer.yaml"
    config_file.write_text(
        "publishing:\n  mqtt:\n    tls: {ca_file: ca.pem}\n    delivery: {spill_dir: spill}\n" + CAMERA
    )
    settings = path_settings(load_config(config_file))
    assert {"triton.model_repository", "snapshots.directory", "assets_dir"} <= set(settings)
    relative = {key: path for key, path in settings.items() if not path.is_absolute()}
    assert not relative, f"left relative to the working directory: {relative}"


def test_a_home_relative_path_is_the_users_home(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = site.parent / "home"
    monkeypatch.setenv("HOME", str(home))
    config_file = site / "streamer.yaml"
    config_file.write_text("identities:\n  faces_store: ~/faces.npz\n" + CAMERA)
    assert load_config(config_file).identities.faces_store == home / "faces.npz"


def test_assets_default_to_the_nearest_shared_folder_above_the_config(site: Path) -> None:
    """A `shared/` beside a checkout serves every config inside it, whatever the depth."""
    shared = site.parent.parent / "shared"
    shared.mkdir()
    nested = site / "cameras" / "east"
    nested.mkdir(parents=True)
    for folder in (site, nested):
        (folder / "streamer.yaml").write_text(CAMERA)
        assert load_config(folder / "streamer.yaml").assets_dir == shared


def test_assets_from_the_environment_win_over_the_search_and_lose_to_the_setting(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (site / "shared").mkdir()
    monkeypatch.setenv(ASSETS_ENV_VAR, str(site.parent / "from-env"))
    config_file = site / "streamer.yaml"
    config_file.write_text(CAMERA)
    assert load_config(config_file).assets_dir == site.parent / "from-env"
    config_file.write_text("assets_dir: mine\n" + CAMERA)
    assert load_config(config_file).assets_dir == site / "mine"


def test_a_config_without_a_file_is_relative_to_the_working_directory(site: Path) -> None:
    assert Path.cwd().name == "elsewhere"
    config = parse_config("snapshots:\n  directory: pictures\n" + CAMERA, env={})
    assert config.snapshots.directory == Path("pictures")
    assert resolve_repository(config) == Path.cwd() / "model_repository"
    assert store_path(config) == Path.cwd() / "data" / "faces.npz"
