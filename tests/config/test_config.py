"""Configuration errors an operator can act on: one line, file, line number, key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.assembly import registered
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
            "detector:\n  family: yolo-nas\ncameras:\n" + GOOD_CAMERA,
            "cfg.yaml:2: detector.family: unknown detector family 'yolo-nas' (known: yolox)",
            id="unknown-detector-family",
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
        parse_config(text, "cfg.yaml", env={}, registered=registered())
    assert len(caught.value.lines) == 1, caught.value.lines
    line = caught.value.lines[0]
    assert "\n" not in line
    assert line.startswith(expected), line


def test_several_problems_are_all_reported() -> None:
    text = "cameras:\n  - name: a\n    url: ftp://x\n    colour: red\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "cfg.yaml", env={}, registered=registered())
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
    from tests.support.checkout import REPO_ROOT

    documented = (REPO_ROOT / "docs" / "configuration.md").read_text()
    assert documented == reference_markdown(), "run: python -m streamer.config > docs/configuration.md"


@pytest.mark.parametrize(
    ("written", "meant"), [("off", "off"), ("on", "on"), ("'off'", "off"), ("auto", "auto")]
)
def test_shared_memory_on_off_unquoted_is_taken_as_meant(written: str, meant: str) -> None:
    config = parse_config(f"triton:\n  shared_memory: {written}\ncameras:\n" + GOOD_CAMERA, env={})
    assert config.triton.shared_memory == meant


ENV_HINT = "(write ${NAME}, ${NAME:-default} or $$ for a literal $)"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        pytest.param("rtsp://${A:-${B}}/s", "nested '${' inside '${...}' is not supported", id="nested"),
        pytest.param("rtsp://${V-d}/s", "'${V-...}' is not supported", id="dash-without-colon"),
        pytest.param("rtsp://${V:=d}/s", "'${V:=...}' is not supported", id="assign"),
        pytest.param("rtsp://${V:?no}/s", "'${V:?...}' is not supported", id="error-form"),
        pytest.param("rtsp://${ V }/s", "spaces inside '${...}'", id="spaces"),
        pytest.param("rtsp://${V/s", "unclosed '${'", id="unclosed"),
        pytest.param("rtsp://${}/s", "'${...}' needs a variable name of letters, digits and _", id="empty"),
        pytest.param("rtsp://${1V}/s", "'${...}' needs a variable name of letters, digits and _", id="digit"),
    ],
)
def test_a_malformed_environment_reference_is_one_line_not_literal_text(url: str, problem: str) -> None:
    text = f'cameras:\n  - name: a\n    url: "{url}"\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "cfg.yaml", env={"A": "a-value", "B": "b-value", "V": "v-value"})
    assert caught.value.lines == [f"cfg.yaml:3: cameras[0].url: {problem} {ENV_HINT}"]
    assert "-value" not in caught.value.lines[0]


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        ("rtsp://${CAM_HOST:-fallback}/s", {}, "rtsp://fallback/s"),
        ("rtsp://${CAM_HOST:-fallback}/s", {"CAM_HOST": ""}, "rtsp://fallback/s"),
        ("rtsp://${CAM_HOST:-fallback}/s", {"CAM_HOST": "cam"}, "rtsp://cam/s"),
        ("rtsp://h${EMPTY}/s", {"EMPTY": ""}, "rtsp://h/s"),
        ("rtsp://h/pa$s${PW:-d$x}$$", {}, "rtsp://h/pa$sd$x$"),
    ],
    ids=["unset", "set-but-empty", "set", "empty-without-default", "lone-dollar-literal"],
)
def test_interpolation_follows_the_shell(url: str, env: dict[str, str], expected: str) -> None:
    """`:-` applies to unset and empty variables; `${VAR}` set but empty is empty, not an error."""
    config = parse_config(f"cameras:\n  - name: a\n    url: {url}\n", env=env)
    assert config.cameras[0].url == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "cameras:\n  - name: a\n    url: rtsp://h/s\n    max_fps: ${SECRET}\n",
            "cfg.yaml:4: cameras[0].max_fps: Input should be a valid number",
            id="type-error",
        ),
        pytest.param(
            "dashboard:\n  port: ${SECRET}\ncameras:\n" + GOOD_CAMERA,
            "cfg.yaml:2: dashboard.port: Input should be a valid integer",
            id="int-in-another-section",
        ),
        pytest.param(
            "cameras:\n  - name: x${SECRET}!\n    url: rtsp://h/s\n",
            "cfg.yaml:2: cameras[0].name: String should match pattern",
            id="pattern",
        ),
        pytest.param(
            "cameras:\n  - name: ${SECRET}\n    url: rtsp://h/a\n  - name: ${SECRET}\n    url: rtsp://h/b\n",
            "cfg.yaml:4: cameras[1].name: duplicate camera name",
            id="duplicate-name",
        ),
        pytest.param(
            "cameras:\n  - name: a\n    url: ${SECRET}://h/s\n",
            "cfg.yaml:3: cameras[0].url: unsupported URL scheme",
            id="validator-message",
        ),
        pytest.param(
            "cameras:\n  - name: a\n    url: rtsp://admin:${SECRET}@h:${SECRET}/s\n",
            "cfg.yaml:3: cameras[0].url: malformed URL: the port is not a number",
            id="malformed-url",
        ),
    ],
)
def test_a_value_from_the_environment_is_never_echoed(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "cfg.yaml", env={"SECRET": "hunter2"}, registered=registered())
    (line,) = caught.value.lines
    assert line.startswith(expected), line
    assert "hunter2" not in line


def test_a_value_written_in_the_file_is_still_shown_but_not_one_from_the_environment() -> None:
    text = "cameras:\n" + GOOD_CAMERA + "    max_fps: ${FPS:-fast}\n"
    with pytest.raises(ConfigError) as from_file:
        parse_config(text, "cfg.yaml", env={})
    with pytest.raises(ConfigError) as from_environment:
        parse_config(text, "cfg.yaml", env={"FPS": "hunter2"})
    assert from_file.value.lines[0].endswith("(got 'fast')")
    assert from_environment.value.lines[0].endswith("(the value from the environment is not shown)")


@pytest.mark.parametrize(
    ("hosts", "expected"),
    [(["Streamer.Example.COM.", "10.0.0.5", "[::1]", "*"], ["streamer.example.com", "10.0.0.5", "::1", "*"])],
)
def test_dashboard_allowed_hosts_are_normalised(hosts: list[str], expected: list[str]) -> None:
    yaml_hosts = ", ".join(f'"{host}"' for host in hosts)
    config = parse_config(f"dashboard:\n  allowed_hosts: [{yaml_hosts}]\ncameras:\n" + GOOD_CAMERA, env={})
    assert config.dashboard.allowed_hosts == expected


@pytest.mark.parametrize("host", ["http://streamer.example.com", "streamer.example.com:8080", "a b", ""])
def test_a_dashboard_allowed_host_with_scheme_or_port_is_one_line(host: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f'dashboard:\n  allowed_hosts: ["{host}"]\ncameras:\n' + GOOD_CAMERA, "cfg.yaml", env={})
    (line,) = caught.value.lines
    assert line.startswith(f"cfg.yaml:2: dashboard.allowed_hosts: '{host}' is not a host name"), line
