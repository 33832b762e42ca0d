"""Configuration errors an operator can act on: one line, file, line number, key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.config import ConfigError, load_config, parse_config
from streamer.core.redaction import redact_url

GOOD_CAMERA = "  - name: lobby\n    url: rtsp://10.0.0.5/stream\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "cameras:\n" + GOOD_CAMERA + "    fps: 5\n",
            "cfg.yaml:4: cameras[0].fps: unknown key (did you mean 'max_fps'?)",
            id="unknown-key",
        ),
        pytest.param(
            "cameras:\n  - name: a\n    url: ftp://host/video\n",
            "cfg.yaml:3: cameras[0].url: unsupported URL scheme 'ftp'",
            id="bad-url-scheme",
        ),
        pytest.param(
            "cameras:\n" + GOOD_CAMERA + GOOD_CAMERA,
            "cfg.yaml:4: cameras[1].name: duplicate camera name 'lobby' (first used at cameras[0])",
            id="duplicate-names",
        ),
        pytest.param(
            "cameras:\n" + GOOD_CAMERA + "    max_fps: fast\n",
            "cfg.yaml:4: cameras[0].max_fps: Input should be a valid number",
            id="bad-type",
        ),
        pytest.param(
            "triton:\n  mode: cloud\ncameras:\n" + GOOD_CAMERA,
            "cfg.yaml:2: triton.mode: Input should be 'embedded' or 'external'",
            id="bad-enum",
        ),
        pytest.param(
            "cameras:\n  - name: a\n    url: rtsp://admin:${CAM_PASSWORD}@10.0.0.5/s\n",
            "cfg.yaml:3: cameras[0].url: environment variable CAM_PASSWORD is not set",
            id="missing-env",
        ),
        pytest.param("cameras: []\n", "cfg.yaml:1: cameras: List should have at least 1 item", id="empty"),
        pytest.param("cameras:\n  - name: [\n", "cfg.yaml:", id="invalid-yaml"),
        pytest.param(
            "cameras:\n  - url: rtsp://h/s\n",
            "cfg.yaml:2: cameras[0].name: required key is missing",
            id="missing-name",
        ),
    ],
)
def test_each_problem_is_one_line_naming_file_line_and_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "cfg.yaml", env={})
    assert len(caught.value.lines) == 1, caught.value.lines
    line = caught.value.lines[0]
    assert "\n" not in line
    assert line.startswith(expected), line


def test_several_problems_are_all_reported() -> None:
    text = "cameras:\n  - name: a\n    url: ftp://x\n    colour: red\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "cfg.yaml", env={})
    assert [line.split(": ")[1] for line in caught.value.lines] == ["cameras[0].url", "cameras[0].colour"]


def test_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")
    assert caught.value.lines == [f"{tmp_path / 'nope.yaml'}: config file not found"]


def test_environment_interpolation_keeps_secrets_out_of_files() -> None:
    text = (
        "cameras:\n  - name: a\n    url: rtsp://admin:${CAM_PASSWORD}@10.0.0.5/s\n"
        "  - name: b\n    url: rtsp://${CAM_HOST:-10.0.0.6}/s\n"
        "  - name: c\n    url: rtsp://h/$$literal\n"
    )
    config = parse_config(text, env={"CAM_PASSWORD": "s3cret"})
    assert [c.url for c in config.cameras] == [
        "rtsp://admin:s3cret@10.0.0.5/s",
        "rtsp://10.0.0.6/s",
        "rtsp://h/$literal",
    ]


def test_relative_file_urls_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "cfg.yaml"
    path.write_text("cameras:\n  - name: a\n    url: ../clip.mp4\n")
    config = load_config(path)
    assert Path(config.cameras[0].url) == (tmp_path / "clip.mp4")
    assert config.cameras[0].is_file


def test_defaults_make_a_minimal_file_valid() -> None:
    config = parse_config("cameras:\n" + GOOD_CAMERA, env={})
    assert config.triton.mode == "embedded"
    assert config.cameras[0].enabled and not config.cameras[0].is_file


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("rtsp://admin:s3cret@10.0.0.5:554/s", "rtsp://***@10.0.0.5:554/s"),
        ("rtsp://admin@10.0.0.5/s", "rtsp://***@10.0.0.5/s"),
        ("rtsp://10.0.0.5/s", "rtsp://10.0.0.5/s"),
        ("/videos/a.mp4", "/videos/a.mp4"),
    ],
)
def test_redact_url_hides_credentials(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_configuration_reference_in_docs_is_up_to_date() -> None:
    from streamer.config.reference import reference_markdown
    from streamer.core.assets import PROJECT_ROOT

    documented = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
    assert documented == reference_markdown(), "run: python -m streamer.config > docs/configuration.md"


@pytest.mark.parametrize(
    ("written", "meant"), [("off", "off"), ("on", "on"), ("'off'", "off"), ("auto", "auto")]
)
def test_shared_memory_on_off_unquoted_is_taken_as_meant(written: str, meant: str) -> None:
    config = parse_config(f"triton:\n  shared_memory: {written}\ncameras:\n" + GOOD_CAMERA, env={})
    assert config.triton.shared_memory == meant


def test_relative_paths_written_in_the_file_are_relative_to_it(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "triton:\n  model_repository: models\nidentities:\n  faces_store: faces.npz\n"
        "cameras:\n" + GOOD_CAMERA
    )
    config = load_config(path)
    assert config.triton.model_repository == tmp_path / "models"
    assert config.identities.faces_store == tmp_path / "faces.npz"
    path.write_text("cameras:\n" + GOOD_CAMERA)
    assert load_config(path).triton.model_repository == Path("model_repository")  # the project's
