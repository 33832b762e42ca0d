"""The deployment files (deploy/, configs/external.yaml) an operator applies as they are.

Nothing here can be built or started without Docker or a cluster, so these tests check what a
broken deployment would trip over first: files that do not parse, streamer configs that do not
load with the environment their container gets, models Triton is not told to load, and names
(services, ports, paths) that disagree between files.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from google.protobuf import text_format
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from tritonclient.grpc import model_config_pb2

from streamer.assembly import required_models
from streamer.check import check_repository
from streamer.config import StreamerConfig, load_config
from streamer.metrics.server import HEALTH_PATH, PROBE_PATHS, READY_PATH
from tests.support.checkout import REPO_ROOT, SHIPPED_CONFIGS

DEPLOY = REPO_ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
CONSTRAINTS = DEPLOY / "constraints.txt"
COMPOSE_FILE = DEPLOY / "compose" / "docker-compose.yml"
COMPOSE_CONFIG = DEPLOY / "compose" / "streamer.yaml"
KUBERNETES = DEPLOY / "kubernetes"
TRITON_DEPLOYMENT = KUBERNETES / "triton" / "deployment.yaml"
TRITON_SERVICE = KUBERNETES / "triton" / "service.yaml"
STREAMER_DEPLOYMENT = KUBERNETES / "streamer" / "base" / "deployment.yaml"
STREAMER_SERVICE = KUBERNETES / "streamer" / "base" / "service.yaml"
SECRET_EXAMPLE = KUBERNETES / "streamer" / "secret.example.yaml"
GROUPS = KUBERNETES / "streamer" / "groups"
EXTERNAL_CONFIG = REPO_ROOT / "configs" / "external.yaml"

YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})
JSON_FILES = sorted(DEPLOY.rglob("*.json"))
GROUP_CONFIGS = sorted(GROUPS.glob("*/streamer.yaml"))
CONFIG_FILE_IN_CONTAINER = "/config/streamer.yaml"

# Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, and $$.
COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
# Lower case only: upper-case words in the docs are placeholders (--load-model=NAME).
MODEL_FOLDER_MENTION = re.compile(r"model_repository/([a-z0-9_]+)/")
LOAD_MODEL_MENTION = re.compile(r"--load-model=([a-z0-9_]+)")
LOAD_MODEL_ARGUMENT = re.compile(r"^--load-model=(.+)$")
PROTOBUF_BLOCK = re.compile(r"```protobuf\n(.*?)```", re.DOTALL)
LOCAL_PROBE_URL = re.compile(r"http://127\.0\.0\.1:(\d+)(/[A-Za-z0-9_/.-]*)")


def relative(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose_value(text: str) -> str:
    """A compose `environment:` value as compose gives it with no variables set on the host."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        operator, argument = match.group(2), match.group(3)
        if operator in {":?", "?"}:
            pytest.fail(
                f"{relative(COMPOSE_FILE)}: {match.group(0)} makes `docker compose up` fail "
                "until the operator sets it; give a default",
                pytrace=False,
            )
        return argument if operator in {":-", "-"} else ""

    return COMPOSE_VARIABLE.sub(replace, text)


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = load_yaml(COMPOSE_FILE)["services"]
    return services


def compose_streamer_environment() -> dict[str, str]:
    environment = compose_services()["streamer"]["environment"]
    assert isinstance(environment, dict), "use the mapping form of `environment:` for the streamer"
    return {name: compose_value(str(value)) for name, value in environment.items()}


def only_container(manifest: Path) -> dict[str, Any]:
    containers: list[dict[str, Any]] = load_yaml(manifest)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{relative(manifest)}: expected one container"
    return containers[0]


def kubernetes_pod_environment() -> dict[str, str]:
    """What a streamer pod sees: the Deployment's `env` plus every key of the Secret it imports."""
    container = only_container(STREAMER_DEPLOYMENT)
    secret = load_yaml(SECRET_EXAMPLE)
    imported = [source["secretRef"]["name"] for source in container.get("envFrom", [])]
    assert imported == [secret["metadata"]["name"]], (
        f"{relative(STREAMER_DEPLOYMENT)} imports {imported}; secret.example.yaml documents "
        f"{secret['metadata']['name']}"
    )
    environment = {str(k): str(v) for k, v in secret["stringData"].items()}
    environment.update({item["name"]: str(item["value"]) for item in container.get("env", [])})
    return environment


def load_models_argument(arguments: list[str]) -> list[str]:
    found = [m.group(1) for a in arguments if (m := LOAD_MODEL_ARGUMENT.match(a))]
    assert "--model-control-mode=explicit" in arguments, "--load-model needs explicit model control"
    return found


def host_and_port(url: str) -> tuple[str, int | None]:
    parts = urlsplit(f"//{url}")
    return parts.hostname or "", parts.port


def docker_ignored(path: str) -> bool:
    patterns = (DEPLOY.parent / ".dockerignore").read_text(encoding="utf-8").splitlines()
    candidates = [path, *(str(parent) for parent in Path(path).parents if str(parent) != ".")]
    return any(
        fnmatch.fnmatch(candidate, pattern.strip())
        for pattern in patterns
        if pattern.strip() and not pattern.startswith(("#", "!"))
        for candidate in candidates
    )


def dockerfile_copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context."""
    copies = []
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            copies.append((words[1:-1], words[-1]))
    return copies


@pytest.mark.parametrize("path", YAML_FILES, ids=relative)
def test_every_yaml_file_parses(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert documents, f"{relative(path)} holds no YAML document"


@pytest.mark.parametrize("path", JSON_FILES, ids=relative)
def test_every_json_file_parses(path: Path) -> None:
    assert json.loads(path.read_text(encoding="utf-8"))


def test_compose_streamer_loads_its_config_with_the_environment_compose_gives_it() -> None:
    services = compose_services()
    streamer = services["streamer"]
    mounts = {target: source for source, target, *_ in (str(v).split(":") for v in streamer["volumes"])}
    assert (COMPOSE_FILE.parent / mounts[CONFIG_FILE_IN_CONTAINER]).resolve() == COMPOSE_CONFIG
    assert streamer["command"][-1] == CONFIG_FILE_IN_CONTAINER

    config = load_config(COMPOSE_CONFIG, env=compose_streamer_environment())

    assert (config.triton.mode, config.triton.shared_memory) == ("external", "off")
    host, port = host_and_port(config.triton.url)
    assert host in services, f"triton.url names '{host}', not a compose service"
    assert f"{port}" in {str(p).rsplit(":", 1)[-1] for p in services[host]["ports"]}
    for sink in (config.publishing.redis, config.publishing.mqtt):
        assert sink.enabled and sink.host in services, f"no compose service '{sink.host}'"
    published = {str(p).rsplit(":", 1)[-1] for p in streamer["ports"]}
    assert str(config.dashboard.port) in published and config.dashboard.host == "0.0.0.0"


@pytest.mark.parametrize("path", GROUP_CONFIGS, ids=lambda p: p.parent.name)
def test_kubernetes_group_loads_its_config_with_the_pods_environment(path: Path) -> None:
    config = load_config(path, env=kubernetes_pod_environment())

    triton = load_yaml(TRITON_SERVICE)
    grpc_port = next(p["port"] for p in triton["spec"]["ports"] if p["name"] == "grpc")
    assert (config.triton.mode, config.triton.shared_memory) == ("external", "off")
    assert host_and_port(config.triton.url) == (triton["metadata"]["name"], grpc_port)
    container_port = next(p["containerPort"] for p in only_container(STREAMER_DEPLOYMENT)["ports"])
    assert (config.dashboard.host, config.dashboard.port) == ("0.0.0.0", container_port)
    assert config.dashboard.token is not None, "a dashboard reachable in the cluster needs a token"


def group_configs() -> list[StreamerConfig]:
    environment = kubernetes_pod_environment()
    return [load_config(path, env=environment) for path in GROUP_CONFIGS]


def test_kubernetes_groups_publish_under_their_own_prefixes_and_camera_names() -> None:
    configs = group_configs()
    assert len(configs) >= 2, "the example shows how groups differ: keep at least two"
    for field in ("topic_prefix", "key_prefix"):
        sink = "mqtt" if field == "topic_prefix" else "redis"
        prefixes = [getattr(getattr(c.publishing, sink), field) for c in configs]
        assert len(set(prefixes)) == len(prefixes), f"publishing.{sink}.{field} shared: {prefixes}"
    cameras = [camera.name for c in configs for camera in c.cameras]
    assert len(set(cameras)) == len(cameras), f"camera names repeat across groups: {cameras}"


def test_every_camera_group_is_deployed() -> None:
    resources = load_yaml(KUBERNETES / "kustomization.yaml")["resources"]
    groups = [f"streamer/groups/{p.parent.name}" for p in GROUP_CONFIGS]
    missing = sorted(set(groups) - set(resources))
    assert not missing, f"camera groups not listed in deploy/kubernetes/kustomization.yaml: {missing}"


@pytest.mark.parametrize("path", sorted(KUBERNETES.rglob("kustomization.yaml")), ids=relative)
def test_kustomization_references_existing_files(path: Path) -> None:
    kustomization = load_yaml(path)
    referenced = list(kustomization.get("resources", []))
    referenced += [p["path"] for p in kustomization.get("patches", [])]
    for generator in kustomization.get("configMapGenerator", []):
        referenced += [f.split("=", 1)[-1] for f in generator.get("files", [])]
    for name in referenced:
        target = path.parent / name
        assert target.is_file() or (target / "kustomization.yaml").is_file(), (
            f"{relative(path)}: '{name}' is neither a file nor a kustomization folder"
        )


@pytest.mark.parametrize(
    ("where", "configs", "load_arguments"),
    [
        pytest.param(
            "compose",
            lambda: [load_config(COMPOSE_CONFIG, env=compose_streamer_environment())],
            lambda: compose_services()["triton"]["command"],
            id="compose",
        ),
        pytest.param(
            "kubernetes",
            group_configs,
            lambda: only_container(TRITON_DEPLOYMENT)["args"],
            id="kubernetes",
        ),
    ],
)
def test_triton_loads_every_model_the_streamer_configs_need(
    where: str, configs: Any, load_arguments: Any
) -> None:
    loaded = load_models_argument(load_arguments())
    needed = {model for config in configs() for model in required_models(config)}
    assert needed <= set(loaded), f"{where}: Triton does not load {sorted(needed - set(loaded))}"
    for model in loaded:
        assert (SHIPPED_CONFIGS / model / "config.pbtxt").is_file(), f"{where}: no shipped config of {model}"


def test_model_folders_named_in_deploy_files_exist() -> None:
    texts = [p.read_text(encoding="utf-8") for p in DEPLOY.rglob("*") if p.suffix in {".md", ".yaml", ".yml"}]
    named = {m for text in texts for m in MODEL_FOLDER_MENTION.findall(text)}
    named |= {m for text in texts for m in LOAD_MODEL_MENTION.findall(text)}
    assert "person_detector" in named, "the deploy docs no longer name the detector's folder"
    missing = sorted(m for m in named if not (SHIPPED_CONFIGS / m / "config.pbtxt").is_file())
    assert not missing, f"deploy/ names model folders the package ships no config for: {missing}"


def test_model_config_examples_in_the_docs_are_valid_model_configs() -> None:
    blocks = PROTOBUF_BLOCK.findall((DEPLOY / "model_repository.md").read_text(encoding="utf-8"))
    assert blocks, "model_repository.md shows no config.pbtxt example"
    for block in blocks:
        config = text_format.Parse(block, model_config_pb2.ModelConfig())
        if config.name:
            assert (SHIPPED_CONFIGS / config.name / "config.pbtxt").is_file()
            assert config.backend == "onnxruntime"


def test_constraints_pin_every_dependency_within_its_range() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    for dependency in project["project"]["dependencies"]:
        requirement = Requirement(dependency)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned is not None, f"{requirement.name} is not pinned in deploy/constraints.txt"
        assert requirement.specifier.contains(pinned, prereleases=True), (
            f"deploy/constraints.txt pins {requirement.name}=={pinned}, outside '{requirement.specifier}'"
        )


def test_dockerfile_copies_what_the_build_context_keeps() -> None:
    copies = dockerfile_copies()
    assert copies
    for sources, _destination in copies:
        for source in sources:
            if "*" in source:
                continue  # optional files (README*)
            assert (REPO_ROOT / source).exists(), f"Dockerfile copies missing {source}"
            assert not docker_ignored(source.rstrip("/")), f".dockerignore drops {source}"
    assert docker_ignored("model_repository/person_detector/1/model.onnx"), "weights reach the image"


def test_streamer_check_in_the_image_reads_the_shipped_model_configs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The image carries no repository: `streamer check` of each deploy config reads the configs
    the package ships, and finds every model the config needs."""
    configs = [load_config(COMPOSE_CONFIG, env=compose_streamer_environment()), *group_configs()]
    for config in configs:
        config.triton.model_repository = tmp_path / "absent"
        assert check_repository(config, required_models(config)), capsys.readouterr().out
        assert not (tmp_path / "absent").exists(), "check writes nothing"


def test_external_example_config_runs_the_sample_clip_without_any_variables() -> None:
    config = load_config(EXTERNAL_CONFIG, env={})

    assert (config.triton.mode, config.triton.shared_memory) == ("external", "off")
    assert host_and_port(config.triton.url)[1] == 8001
    assert all(camera.is_file and camera.file_path.is_file() for camera in config.cameras)


def dockerfile_instruction(name: str) -> str:
    """One instruction with its continuation lines joined."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line for line in text.splitlines() if line.split()[:1] == [name]]
    assert len(lines) == 1, f"Dockerfile: expected one {name}"
    return lines[0]


def local_probe(command: str) -> tuple[int, str]:
    """(port, path) of the loopback URL a health check command fetches, with Python's urllib."""
    assert "urllib.request.urlopen" in command and "curl" not in command, command
    found = LOCAL_PROBE_URL.findall(command)
    assert len(found) == 1, f"expected one http://127.0.0.1:PORT/PATH in {command!r}"
    return int(found[0][0]), found[0][1]


def test_probe_paths_are_the_servers_open_health_endpoints() -> None:
    assert {HEALTH_PATH, READY_PATH} == PROBE_PATHS == {"/healthz", "/readyz"}


def test_kubernetes_probes_check_liveness_on_healthz_and_readiness_on_readyz() -> None:
    container = only_container(STREAMER_DEPLOYMENT)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    probes = {kind: container.get(kind, {}).get("httpGet", {}) for kind in
              ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {kind: probe.get("path") for kind, probe in probes.items()} == {
        "startupProbe": HEALTH_PATH, "livenessProbe": HEALTH_PATH, "readinessProbe": READY_PATH
    }
    dashboard_ports = {(c.dashboard.host, c.dashboard.port) for c in group_configs()}
    for kind, probe in probes.items():
        assert "httpHeaders" not in probe, f"{kind}: the probes need no token"
        port = ports.get(probe["port"], probe["port"])
        assert dashboard_ports == {("0.0.0.0", port)}, f"{kind} probes port {port}: {dashboard_ports}"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30, "allow for a slow start"
    assert container["livenessProbe"]["failureThreshold"] >= 3, "one slow answer must not restart"
    service = load_yaml(STREAMER_SERVICE)
    assert service["spec"].get("publishNotReadyAddresses") is True, "dashboard reachable when not ready"


def test_docker_and_compose_health_checks_fetch_healthz_on_the_dashboard_port() -> None:
    config = load_config(COMPOSE_CONFIG, env=compose_streamer_environment())
    exposed = int(dockerfile_instruction("EXPOSE").split()[1])
    image_check = dockerfile_instruction("HEALTHCHECK")
    compose_check = " ".join(compose_services()["streamer"]["healthcheck"]["test"])

    assert exposed == config.dashboard.port
    assert local_probe(image_check) == (config.dashboard.port, HEALTH_PATH)
    assert local_probe(compose_check) == (config.dashboard.port, HEALTH_PATH)
