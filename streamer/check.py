"""`streamer check`: probe every camera and the Triton server without starting the pipeline."""

from __future__ import annotations

import asyncio

from streamer.assembly import Assembly, default_assembly
from streamer.config import CameraConfig, StreamerConfig
from streamer.core.interfaces import ProbeFailed
from streamer.core.redaction import redact_url, scrub, url_secrets
from streamer.inference.catalog import find, find_demo_weights, is_stale, missing_message
from streamer.inference.repository import RepositoryError, check_output_dims, read_model
from streamer.inference.triton import TritonConnection, resolve_repository

OK, FAIL, SKIP = "ok", "FAIL", "skip"
PROBE_TIMEOUT_S = 5.0


def public_detail(exc: Exception, url: str) -> str:
    """The error as one line an operator can act on: the URL shown redacted, no secret in any form."""
    detail = f"{type(exc).__name__}: {exc}".replace(url, redact_url(url))
    return scrub(detail, url_secrets([url])) or ""


async def check_cameras(config: StreamerConfig, assembly: Assembly) -> bool:
    async def one(camera: CameraConfig) -> tuple[CameraConfig, str, str]:
        if not camera.enabled:
            return camera, SKIP, "disabled"
        try:
            described = await asyncio.to_thread(assembly.probe_source, camera)
            return camera, OK, f"{described}; motion gating {'on' if camera.motion_gated else 'off'}"
        except Exception as exc:
            return camera, FAIL, public_detail(exc, camera.url)

    results = await asyncio.gather(*(one(c) for c in config.cameras))
    for camera, status, detail in results:
        print(f"  camera {camera.name:<16} {status:<4} {redact_url(camera.url)}: {detail}")
    return all(status != FAIL for _c, status, _d in results)


def check_repository(config: StreamerConfig, models: list[str]) -> bool:
    repository = resolve_repository(config)
    healthy = True
    for name in models:
        try:
            # A shipped config missing there is written at start (embedded mode).
            model = read_model(repository, name, shipped_fallback=True)
        except RepositoryError as exc:
            print(f"  model  {name:<16} {FAIL:<4} {exc}")
            healthy = False
            continue
        item = find(name)
        if model.weights.is_file():
            if config.triton.mode == "embedded" and item is not None and is_stale(
                item, repository, config.assets_dir
            ):
                print(f"  model  {name:<16} {OK:<4} will be prepared again at start")
                continue
            try:
                check_output_dims(model)
            except RepositoryError as exc:
                print(f"  model  {name:<16} {FAIL:<4} {exc}")
                healthy = False
                continue
            print(f"  model  {name:<16} {OK:<4} {model.weights}")
        elif config.triton.mode == "embedded" and item is not None and find_demo_weights(
            item, config.assets_dir
        ):
            print(f"  model  {name:<16} {OK:<4} will be prepared from the demo weights at start")
        elif config.triton.mode == "external":
            print(f"  model  {name:<16} {SKIP:<4} served by the external server")
        else:
            missing = (
                missing_message(item, repository) if item is not None
                else f"{model.weights} is missing (a model of your own: put its ONNX file there)"
            )
            print(f"  model  {name:<16} {FAIL:<4} {missing}")
            healthy = False
    return healthy


async def check_triton(config: StreamerConfig, models: list[str]) -> bool:
    if config.triton.mode == "external":
        # a probe should answer quickly, not wait as long as a starting service would
        probe = config.model_copy(
            update={"triton": config.triton.model_copy(update={"startup_timeout_s": PROBE_TIMEOUT_S})}
        )
        connection = TritonConnection(probe, models)
        try:
            await connection.start()
            print(f"  triton {config.triton.url:<16} {OK:<4} server and models ready")
            return True
        except Exception as exc:  # TritonUnavailable, connection errors: one line each
            print(f"  triton {config.triton.url:<16} {FAIL:<4} {exc}")
            return False
        finally:
            await connection.stop()
    from streamer.inference.server import TritonInstallation, TritonStartError

    try:
        installation = TritonInstallation.locate()
    except TritonStartError as exc:
        print(f"  triton {'embedded':<16} {FAIL:<4} {exc}")
        return False
    print(f"  triton {'embedded':<16} {OK:<4} {installation.binary}")
    return True


async def check_brokers(config: StreamerConfig, assembly: Assembly) -> bool:
    """Connect once to each enabled sink that has something to probe (MQTT, Redis); one line
    each, wrong password included.

    MQTT also publishes a QoS 1 probe under its topic prefix and reads it back, so an account
    the broker's ACL does not let publish there is one FAIL line.
    """
    probed = 0
    healthy = True
    for sink in assembly.build_sinks(config):
        try:
            detail = await sink.probe()
        except ProbeFailed as exc:
            print(f"  {sink.name:<6} {sink.endpoint:<22} {FAIL:<4} {exc}")
            healthy = False
            probed += 1
            continue
        if detail is not None:
            print(f"  {sink.name:<6} {sink.endpoint:<22} {OK:<4} {detail}")
            probed += 1
    if not probed:
        print("  (no MQTT or Redis sink enabled)")
    return healthy


async def run_checks(config: StreamerConfig, assembly: Assembly | None = None) -> int:
    assembly = assembly if assembly is not None else default_assembly()
    models = assembly.required_models(config)
    print("cameras:")
    cameras_ok = await check_cameras(config, assembly)
    print("models and server:")
    repository_ok = check_repository(config, models)
    triton_ok = await check_triton(config, models)
    print("brokers:")
    brokers_ok = await check_brokers(config, assembly)
    healthy = cameras_ok and repository_ok and triton_ok and brokers_ok
    print("all checks passed" if healthy else "some checks FAILED")
    return 0 if healthy else 1
